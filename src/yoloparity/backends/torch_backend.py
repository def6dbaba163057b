"""PyTorch backend: our own rebuilt network on CPU or CUDA, fp32 or fp16.

On CPU every image runs as its own forward pass with single-threaded kernels, images spread
over ``threads`` Python threads (torch releases the GIL inside ops). oneDNN picks different
convolution kernels for different thread counts and batch sizes (measured: 1e-3 px apart at 1
vs 2 threads), so batched multi-threaded CPU inference would make results depend on --batch
and on how many processes share the machine. Per-image single-threaded passes are bitwise the
same at any batch size, thread count and number of processes — and on 2 cores they were faster
than one batched 2-thread pass (0.42 s vs 0.57 s for 11 images at 448x640).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
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
        self.threads = int(threads) if threads else max(torch.get_num_threads(), 1)
        self.pool = None
        if self.torch_device.type == "cpu":
            torch.set_num_threads(1)  # process-wide: every CPU kernel single-threaded, parallel over images
            self.pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="yp-torch")
        self.constraints = ShapeConstraints()

    def _forward(self, x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            x = x.to(self.torch_device)
            if self.precision == "fp16":
                x = x.half()
            return self.net(x).float().cpu().numpy()

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.path)
        x = torch.from_numpy(batch)
        if self.pool is None:
            return self._forward(x)
        outputs = list(self.pool.map(self._forward, (x[i : i + 1] for i in range(x.shape[0]))))
        return np.concatenate(outputs, axis=0)


def create(path: str, device: str = "cpu", **options) -> TorchBackend:
    return TorchBackend(path, device=device, **options)
