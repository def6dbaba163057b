"""PyTorch backend: our own rebuilt network on CPU or CUDA, fp32 or fp16, and the float64 truth on CPU.

``precision="fp64"`` runs the *unfused* network (checkpoint weights and BatchNorm statistics widened
exactly to float64, no Conv+BN folding) in float64: the exact function the checkpoint defines, the
same on every CPU to ~1e-12 whatever kernels oneDNN picks there. It is what "which of three
machines is right?" is answered against (``audit`` with a ``precision=fp64`` configuration).

On CPU every image runs as its own forward pass (channels-last in fp32) with single-threaded kernels, images spread
over ``threads`` Python threads (torch releases the GIL inside ops). oneDNN picks different
convolution kernels for different thread counts and batch sizes (measured: 1e-3 px apart at 1
vs 2 threads), so batched multi-threaded CPU inference would make results depend on --batch
and on how many processes share the machine. Per-image single-threaded passes are bitwise the
same at any batch size, thread count and number of processes — and on 2 cores they were faster
than one batched 2-thread pass (0.42 s vs 0.57 s for 11 images at 448x640).
"""

from __future__ import annotations

import copy
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from functools import lru_cache

import numpy as np
import torch

from ..errors import BackendUnavailableError, ModelFileError
from ..models.build import BuiltModel, build_model
from ..models.checkpoint import read_checkpoint
from ..process_settings import torch_threads
from .base import BackendBase, ShapeConstraints, run_image_by_image
from .compute_precision import ComputePrecision, torch_cpu_precision, torch_cuda_precision
from .registry import backend_info, is_default_precision, is_truth_precision, precision_info


def file_sha256(path: str) -> str:
    """SHA-256 of a file, read in 1 MiB chunks: what a checkpoint is, for specs and cache names."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()




@lru_cache(maxsize=8)
def _load(path: str, mtime: float, fuse: bool, head_branch: str | None = None) -> BuiltModel:
    return build_model(read_checkpoint(path), fuse=fuse, sha256=file_sha256(path), head_branch=head_branch)


def load_built(path: str, fuse: bool = True, head_branch: str | None = None) -> BuiltModel:
    """Read and build a checkpoint once per process (cached by path, modification time, fusion and head branch)."""
    return _load(os.path.abspath(path), os.path.getmtime(path), fuse, head_branch)


def resolve_device(device: str) -> torch.device:
    """A torch device for ``device``, refused clearly when CUDA is asked for and absent."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(None, f"device '{device}' was asked for but CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise BackendUnavailableError(None, f"device '{device}' is not supported by the torch backend (use cpu or cuda:N)")
    return dev


class TorchBackend(BackendBase):
    """A checkpoint's own network in PyTorch. On the CPU, images run in parallel over a pool of
    single-threaded kernels, so results do not depend on the batch size; fp64 runs the unfused network."""
    name = "torch"

    def __init__(self, path: str, device: str = "cpu", half: bool = False, threads: int | None = None,
                 precision: str = "fp32", head_branch: str | None = None):
        if not path.endswith(".pt"):
            raise ModelFileError(path, "the torch backend reads YOLO .pt checkpoints; use --backend onnxruntime for ONNX files")
        precision = "fp16" if half else precision
        backend_info("torch").check_precision(precision, device, path)
        self.torch_device = resolve_device(device)
        self.device = str(self.torch_device)
        self.dtype = getattr(torch, precision_info(precision).torch_dtype)
        self.keeps_dtype = is_truth_precision(precision)  # the float64 output is the truth others are held to
        built = load_built(path, fuse=not is_truth_precision(precision), head_branch=head_branch)
        self.spec = built.spec
        self.path = path
        self.precision = precision
        # fp32 on the CPU runs channels-last (NHWC): oneDNN's convolutions skip a layout reorder per layer, 8-16 %
        # less CPU per one-thread forward on yolov5n/v8n/26n, yolov10n within noise (5.5e-4 to 7.6e-4 px from NCHW, the
        # size of fp32 kernel noise); the float64 truth keeps the plain layout, and CUDA is left as torch picks it
        # (not measured here, no GPU)
        cpu_fp32 = self.torch_device.type == "cpu" and is_default_precision(precision)
        self.memory_format = torch.channels_last if cpu_fp32 else torch.contiguous_format
        # a copy: the cached build is shared with exports and other backends in the process
        self.net = copy.deepcopy(built.net).to(self.torch_device, self.dtype, memory_format=self.memory_format)
        self.threads = int(threads) if threads else max(torch.get_num_threads(), 1)
        self.pool = None
        if self.torch_device.type == "cpu":  # a pool of its own size; kernels single-threaded only while it runs
            self.pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="yp-torch")
        self.constraints = ShapeConstraints()
        self._cuda_precision: tuple[str, str] | None = None  # what a CUDA run computed in, read at its first run

    def compute_precision(self) -> ComputePrecision:
        """What the runs compute in: on CUDA from torch's TF32 flags as they were at the first run (fp32
        convolutions run in TF32 by torch's default; ``--deterministic`` turns it off for its block), on the CPU
        from the float32 matmul precision."""
        if self.torch_device.type == "cuda":
            when = "at the first run" if self._cuda_precision is not None else "(no run yet)"
            computes, default = self._cuda_precision or torch_cuda_precision(torch, self.precision)
            return ComputePrecision(computes, f"torch: cudnn/cuda.matmul allow_tf32 {when}", default)
        return ComputePrecision(torch_cpu_precision(torch, self.precision), "torch: float32 matmul precision")

    def _forward(self, x: torch.Tensor) -> np.ndarray:
        if self._cuda_precision is None and self.torch_device.type == "cuda":
            self._cuda_precision = torch_cuda_precision(torch, self.precision)
        with torch.inference_mode():
            out = self.net(x.to(self.torch_device, self.dtype).contiguous(memory_format=self.memory_format))
            return (out if self.keeps_dtype else out.float()).cpu().numpy()

    def _run_impl(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch)
        if self.pool is None:
            return self._forward(x)
        with torch_threads(1):  # every CPU kernel single-threaded, parallel over images; the caller's count comes back
            return run_image_by_image(self._forward, x, self.pool)

    def layer_outputs(self, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """Forward hooks on the top-level modules, one pass as :meth:`run` makes it (device, precision, network and,
        on the CPU, single-threaded kernels): the last layer's output is the raw output, bit for bit."""
        captured: list[tuple[str, np.ndarray]] = []

        def hook(name):
            def keep(_module, _inputs, output):
                if isinstance(output, torch.Tensor):
                    captured.append((name, output.detach().to("cpu", torch.float64).numpy()))
            return keep

        handles = [m.register_forward_hook(hook(f"model.{i}")) for i, m in enumerate(self.net.model)]
        try:
            with torch_threads(1) if self.pool is not None else nullcontext():  # the kernels run() uses on the CPU
                self._forward(torch.from_numpy(x))
        finally:
            for handle in handles:
                handle.remove()
        return captured

    def _release(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
        self.net = None


def create(path: str, device: str = "cpu", **options) -> TorchBackend:
    """The registry's factory for ``torch``."""
    return TorchBackend(path, device=device, **options)
