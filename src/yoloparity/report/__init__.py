"""What people read: console tables, HTML pages with charts, and images with their detections drawn.
"""
