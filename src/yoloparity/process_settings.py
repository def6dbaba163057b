"""Process-wide settings changed only inside ``with`` blocks, and restored on the way out.

torch's thread count, its determinism switches and the logging levels belong to the whole process:
a library that sets them for its own work and leaves them set changes the caller's program (the
first torch model saw 2 threads, every later one 1, and the user's own torch stayed at 1). Like
detectron2's ``inference_context``, each switch here is a context manager that puts back what it found.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` for the block."""
    import torch

    before = torch.get_num_threads()
    if before == count:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def logger_level(name: str | None, level: int) -> Iterator[None]:
    """The named logger (the root logger for None) at ``level`` for the block."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


@contextmanager
def deterministic_settings() -> Iterator[dict[str, str]]:
    """Every determinism switch torch offers, for the block; yields what was set, for the report.

    ONNX Runtime's and OpenVINO's switches are session options, passed when their sessions are made.
    """
    import torch

    before = {
        "algorithms": (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()),
        "cudnn.deterministic": torch.backends.cudnn.deterministic, "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "tf32.matmul": torch.backends.cuda.matmul.allow_tf32, "tf32.cudnn": torch.backends.cudnn.allow_tf32,
        "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    }
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield {"torch.use_deterministic_algorithms": "True", "cudnn.deterministic": "True", "cudnn.benchmark": "False",
               "tf32": "off", "CUBLAS_WORKSPACE_CONFIG": os.environ["CUBLAS_WORKSPACE_CONFIG"],
               "onnxruntime.use_deterministic_compute": "True"}
    finally:
        torch.use_deterministic_algorithms(before["algorithms"][0], warn_only=before["algorithms"][1])
        torch.backends.cudnn.deterministic = before["cudnn.deterministic"]
        torch.backends.cudnn.benchmark = before["cudnn.benchmark"]
        torch.backends.cuda.matmul.allow_tf32 = before["tf32.matmul"]
        torch.backends.cudnn.allow_tf32 = before["tf32.cudnn"]
        if before["CUBLAS_WORKSPACE_CONFIG"] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = before["CUBLAS_WORKSPACE_CONFIG"]
