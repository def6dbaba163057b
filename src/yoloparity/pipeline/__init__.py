"""From images to detections, shared by every backend: letterbox (the predictors' and the validators' rules),
shape buckets, the :class:`~.predictor.Predictor` (decode threads ahead of inference), post-processing.
"""
