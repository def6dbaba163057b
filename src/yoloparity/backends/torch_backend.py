"""PyTorch backend: our own rebuilt network on CPU or CUDA, fp32 or fp16."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache

import numpy as np
import torch

from ..errors import BackendUnavailableError, ModelFileError
from ..models.build import BuiltModel, build_model
from ..models.checkpoint import read_checkpoint
from .base import ShapeConstraints, check_batch


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> BuiltModel:
    return build_model(read_checkpoint(path), sha256=file_sha256(path))


def load_built(path: str) -> BuiltModel:
    """Read and build a checkpoint once per process (cached by path and modification time)."""
    return _load(os.path.abspath(path), os.path.getmtime(path))


def resolve_device(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(None, f"device '{device}' was asked for but CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise BackendUnavailableError(None, f"device '{device}' is not supported by the torch backend (use cpu or cuda:N)")
    return dev


class TorchBackend:
    name = "torch"

    def __init__(self, path: str, device: str = "cpu", half: bool = False, threads: int | None = None):
        if not path.endswith(".pt"):
            raise ModelFileError(path, "the torch backend reads YOLO .pt checkpoints; use --backend onnxruntime for ONNX files")
        built = load_built(path)
        self.spec = built.spec
        self.path = path
        self.torch_device = resolve_device(device)
        self.device = str(self.torch_device)
        if half and self.torch_device.type != "cuda":
            raise BackendUnavailableError(path, "fp16 on the torch backend needs a CUDA device")
        self.precision = "fp16" if half else "fp32"
        self.net = built.net
        if self.torch_device.type != "cpu" or half:
            import copy

            self.net = copy.deepcopy(built.net).to(self.torch_device)
            if half:
                self.net = self.net.half()
        if threads:
            torch.set_num_threads(int(threads))
        self.constraints = ShapeConstraints()

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.path)
        x = torch.from_numpy(batch).to(self.torch_device)
        if self.precision == "fp16":
            x = x.half()
        return self.net(x).float().cpu().numpy()


def create(path: str, device: str = "cpu", **options) -> TorchBackend:
    return TorchBackend(path, device=device, **options)
