"""yoloparity: YOLO detection that gives the answer you validated, wherever it runs."""

from .api import audit, bench, compare, predict_files, quantize, val
from .errors import YoloParityError
from .model import YoloModel, export_model, load_model
from .types import Detections, Letterbox, ModelSpec, Result

__version__ = "0.1.0"


def predict(model: str, source, backend: str | None = None, device: str = "cpu", **kwargs) -> list[Result]:
    """Load ``model`` and predict ``source`` in one call: the keyword arguments :meth:`YoloModel.predictor` takes
    (``imgsz``, ``conf``, ``batch`` …) go to the prediction, the others (``precision``, ``head``, ``threads`` …) to
    :func:`load_model`."""
    import inspect

    runs = set(inspect.signature(YoloModel.predictor).parameters) - {"self"}
    with load_model(model, backend=backend, device=device, **{k: v for k, v in kwargs.items() if k not in runs}) as loaded:
        return loaded.predict(source, **{k: v for k, v in kwargs.items() if k in runs})


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
