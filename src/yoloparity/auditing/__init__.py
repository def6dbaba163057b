"""The audit: configurations run on the same images and compared stage by stage (letterbox, raw output, candidates,
NMS survivors, detections), real differences told from float noise by tolerances measured against the float64
truth, the first divergent layer or node named; run records saved on one machine and compared on another.
"""
