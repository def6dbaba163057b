"""The machine's own limit: peak GFLOP/s of a matrix multiply on each backend and precision.

A model's share of the peak (model GFLOPs x images/s / probe GFLOP/s) says how much headroom a
configuration leaves; the probe runs in the same run, through the same runtime, on the same device, at the same
thread count, so the ratio is not skewed by a datasheet figure, another day's machine or another device's peak.
How each runtime is probed is its registry entry's ``peak_probe`` (:mod:`yoloparity.backends.peak_probe`).
"""

from __future__ import annotations

from ..backends.registry import backend_info, device_names
from ..errors import YoloParityError


def probe_gflops(backend: str, precision: str, threads: int, device: str = "cpu") -> tuple[float | None, str]:
    """(peak GFLOP/s, how it was measured) — or (None, why there is no probe)."""
    info = backend_info(backend)
    if not info.takes_precision(precision) and not info.runs_file_precision:
        return None, f"{backend} has no {precision} path here"
    if info.takes_precision(precision) and not info.runs_precision_on(precision, device):
        return None, f"{precision} on {backend} needs {device_names(info.precisions[precision])}"
    try:
        return info.probe_peak(precision, threads, device)
    except YoloParityError as exc:  # e.g. a device this runtime build has no provider for: no peak, and why
        return None, exc.problem
