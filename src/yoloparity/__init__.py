"""yoloparity: YOLO detection that gives the answer you validated, wherever it runs."""

from .api import audit, bench, compare, predict_files, quantize, run_settings, val
from .errors import YoloParityError
from .settings import InferenceSettings, LoadOptions
from .types import Detections, Letterbox, ModelSpec, Result
from .yolo_model import YoloModel, export_model, load_model

__version__ = "0.1.0"


def predict(model: str, source, settings: InferenceSettings | None = None, load: LoadOptions | None = None,
            **kwargs) -> list[Result]:
    """Load ``model`` and predict ``source`` in one call, with the run's ``settings`` and ``load`` options; keywords
    naming an :class:`InferenceSettings` field (``imgsz``, ``conf``, ``batch`` …) change the prediction, those naming
    a :class:`LoadOptions` field (``backend``, ``device``, ``precision``, ``head``, ``threads`` …) the loading."""
    settings, load = run_settings(model, InferenceSettings, settings, load, kwargs)
    with load_model(model, options=load) as loaded:
        return loaded.predict(source, settings)


def export(weights: str, out: str, **kwargs) -> str:
    """Export a ``.pt`` checkpoint to ONNX with its spec in the metadata."""
    return export_model(weights, out, **kwargs)


__all__ = [
    "audit",
    "bench",
    "compare",
    "predict_files",
    "quantize",
    "val",
    "Detections",
    "InferenceSettings",
    "LoadOptions",
    "Letterbox",
    "ModelSpec",
    "Result",
    "YoloModel",
    "YoloParityError",
    "export",
    "export_model",
    "load_model",
    "predict",
    "__version__",
]
