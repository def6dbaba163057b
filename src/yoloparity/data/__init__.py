"""Inputs: image sources (files, folders, globs, list files, videos) and datasets (YOLO data.yaml or COCO json) with
their ground truth, class names and the checks of both against a model.
"""
