"""yoloparity: YOLO detection that gives the answer you validated, wherever it runs."""

from .api import audit, bench, compare, predict_files, quantize, val
from .errors import YoloParityError
from .model import YoloModel, export_model, load_model
from .types import Detections, Letterbox, ModelSpec, Result

__version__ = "0.1.0"


def predict(model: str, source, backend: str | None = None, device: str = "cpu", **kwargs) -> list[Result]:
    """Load ``model`` and predict ``source`` in one call (see :meth:`YoloModel.predict`)."""
    with load_model(model, backend=backend, device=device) as loaded:
        return loaded.predict(source, **kwargs)


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
