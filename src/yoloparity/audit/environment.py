"""The environment fingerprint: the versions and settings that change numerics between machines."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def fingerprint() -> dict[str, str]:
    """A flat dict of strings; two runs whose fingerprints differ may legitimately differ in numerics."""
    import cv2
    import numpy as np

    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "cpu_count": str(os.cpu_count()),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "yoloparity": _version("yoloparity"),
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"),
        "onnx": _version("onnx"),
    }
    try:
        import torch

        info["torch_threads"] = str(torch.get_num_threads())
        info["cuda"] = torch.version.cuda or "none"
        info["cuda_devices"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "none"
        info["mkldnn"] = str(torch.backends.mkldnn.is_available())
    except ImportError:
        pass
    try:
        import onnxruntime as ort

        info["onnxruntime_providers"] = ", ".join(ort.get_available_providers())
    except ImportError:
        pass
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE", "CUBLAS_WORKSPACE_CONFIG"):
        if os.environ.get(var):
            info[f"env.{var}"] = os.environ[var]
    return info
