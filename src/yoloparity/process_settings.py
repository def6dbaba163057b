"""Process-wide settings changed only inside ``with`` blocks, and restored on the way out.

torch's thread count, its determinism switches and the logging levels belong to the whole process:
a library that sets them for its own work and leaves them set changes the caller's program (the
first torch model saw 2 threads, every later one 1, and the user's own torch stayed at 1). Like
detectron2's ``inference_context``, each switch here is a context manager that puts back what it found.
"""

from __future__ import annotations

import logging
import os
from contextlib import ExitStack, contextmanager
from typing import Iterator


def machine_threads() -> int:
    """The default thread count of every command (``--threads`` not given): this machine's cores, which a run of
    several local workers shares out between them."""
    return max(1, os.cpu_count() or 1)


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
    }
    with environ_restored():  # CUBLAS_WORKSPACE_CONFIG, and what importing inductor sets on the first call
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        try:
            yield {"torch.use_deterministic_algorithms": "True", "cudnn.deterministic": "True",
                   "cudnn.benchmark": "False", "tf32": "off", "CUBLAS_WORKSPACE_CONFIG": os.environ["CUBLAS_WORKSPACE_CONFIG"],
                   "onnxruntime.use_deterministic_compute": "True"}
        finally:
            torch.use_deterministic_algorithms(before["algorithms"][0], warn_only=before["algorithms"][1])
            torch.backends.cudnn.deterministic = before["cudnn.deterministic"]
            torch.backends.cudnn.benchmark = before["cudnn.benchmark"]
            torch.backends.cuda.matmul.allow_tf32 = before["tf32.matmul"]
            torch.backends.cudnn.allow_tf32 = before["tf32.cudnn"]


@contextmanager
def environ_restored() -> Iterator[None]:
    """The environment put back as it was after the block: variables added are removed, changed ones restored.

    For third-party calls that write ``os.environ`` as a side effect (torch's launcher sets
    ``TORCHELASTIC_SIGNALS_TO_HANDLE``; the first ``use_deterministic_algorithms`` imports inductor, which sets
    ``TORCHINDUCTOR_CACHE_DIR``)."""
    before = dict(os.environ)
    try:
        yield
    finally:
        for name in [n for n in os.environ if n not in before]:
            del os.environ[name]
        for name, value in before.items():
            if os.environ.get(name) != value:
                os.environ[name] = value


@contextmanager
def environ_default(name: str, value: str) -> Iterator[None]:
    """``os.environ[name]`` set to ``value`` for the block unless the caller set it; removed again on the way out."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


@contextmanager
def logger_levels(names: tuple[str, ...], level: int) -> Iterator[None]:
    """Every named logger at ``level`` for the block (several libraries' loggers quietened at once)."""
    with ExitStack() as stack:
        for name in names:
            stack.enter_context(logger_level(name, level))
        yield


def process_snapshot() -> dict:
    """What a library call must leave as it found it: torch's threads and determinism switches (when torch is
    loaded), every logger's level and handlers, and the environment. Compared before/after by the tests."""
    import sys

    loggers = {name: (logger.level, len(logger.handlers), logger.propagate, logger.disabled)
               for name, logger in logging.Logger.manager.loggerDict.items() if isinstance(logger, logging.Logger)}
    root = logging.getLogger()
    snapshot = {"environ": dict(os.environ), "loggers": loggers,
                "root": (root.level, len(root.handlers)), "logging.disable": logging.root.manager.disable}
    torch = sys.modules.get("torch")
    if torch is not None:
        snapshot["torch"] = {"threads": torch.get_num_threads(),
                             "deterministic": torch.are_deterministic_algorithms_enabled(),
                             "cudnn.benchmark": torch.backends.cudnn.benchmark,
                             "grad": torch.is_grad_enabled()}
    return snapshot
