"""Scoring: the validation job over processes, COCO metrics (faster-coco-eval or pycocotools), the trainers' own
metrics (Ultralytics', YOLOv5's), and paired bootstrap intervals for differences between two runs.
"""
