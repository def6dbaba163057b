"""The environment fingerprint: the versions and settings that change numerics between machines.

Two runs whose fingerprints differ may legitimately give different raw outputs (another CPU ISA
picks other kernels, another cuDNN other algorithms, TF32 changes matmul precision); two runs
with equal fingerprints and different outputs point at nondeterminism.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import lru_cache
from importlib import metadata

# ISA extensions that decide which CPU kernels oneDNN, MLAS and OpenBLAS choose
_ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni",
              "amx_tile", "amx_bf16", "amx_int8", "neon", "asimd", "sve")
_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "ONEDNN_MAX_CPU_ISA",
             "DNNL_MAX_CPU_ISA", "CUBLAS_WORKSPACE_CONFIG", "CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpuinfo_first(keys: tuple[str, ...]) -> str:
    """The value of the first /proc/cpuinfo line whose key is one of ``keys``; empty where there is none."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in keys:
                    return value.strip()
    except OSError:
        pass
    return ""


def cpu_flags() -> set[str]:
    """Every ISA flag the CPU reports (/proc/cpuinfo), empty where it cannot be read."""
    return set(_cpuinfo_first(("flags", "Features")).split())


def _cpu() -> tuple[str, str]:
    """(CPU model, the ISA flags of interest it has)."""
    model = platform.processor() or _cpuinfo_first(("model name", "Hardware", "CPU part"))
    flags = cpu_flags()
    return model or "unknown", " ".join(f for f in _ISA_FLAGS if f in flags) or "unknown"


def int8_dot_product(flags: set[str] | None = None) -> str:
    """How this CPU's int8 kernels multiply-accumulate u8 x s8, which decides whether int8 results can saturate.

    ``vnni``: AVX-512 VNNI, AVX-VNNI or AMX sum four u8 x s8 products straight into int32 (exact).
    ``int16-pairs``: x86 without VNNI: ``vpmaddubsw`` adds each pair of products into int16 with saturation,
    so a u8 x s8 model can lose accuracy here that it does not lose on a VNNI CPU.
    ``arm``: ARM's int8 kernels (sdot/udot or widening multiplies) accumulate in int32 without pair saturation.
    """
    flags = cpu_flags() if flags is None else flags
    if not flags:
        return "unknown"
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "vnni"
    if flags & {"asimd", "neon"}:
        return "arm"
    if "avx2" in flags or "ssse3" in flags:
        return "int16-pairs"
    return "unknown"


def cpu_summary() -> str:
    """One line: CPU model, the ISA extensions that pick kernels, and the int8 multiply-accumulate kind."""
    model, isa = _cpu()
    return f"{model} ({platform.machine()}; {isa}; int8 dot product: {int8_dot_product()})"


def _nvidia_driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "none"
    except (OSError, subprocess.TimeoutExpired):
        return "none"


def _torch_info() -> dict[str, str]:
    try:
        import torch
    except ImportError:
        return {"torch": "not installed"}
    cuda = torch.cuda.is_available()
    info = {
        "torch": torch.__version__,
        "torch.threads": str(torch.get_num_threads()),
        "torch.interop_threads": str(torch.get_num_interop_threads()),
        "torch.mkldnn": str(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
        "torch.deterministic_algorithms": str(torch.are_deterministic_algorithms_enabled()),
        "cuda": torch.version.cuda or "none",
        "cudnn": str(torch.backends.cudnn.version()) if cuda else "none",
        "cudnn.benchmark": str(torch.backends.cudnn.benchmark),
        "cudnn.deterministic": str(torch.backends.cudnn.deterministic),
        "tf32.matmul": str(torch.backends.cuda.matmul.allow_tf32),
        "tf32.cudnn": str(torch.backends.cudnn.allow_tf32),
        "torch.float32_matmul_precision": torch.get_float32_matmul_precision(),
        "gpus": ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) if cuda else "none",
    }
    return info


@lru_cache(maxsize=1)
def openvino_default_precision() -> str:
    """The inference precision OpenVINO's CPU plugin picks on this machine when not told (bf16 on CPUs with
    AVX512-BF16 or AMX, f32 elsewhere), in OpenVINO's word: what an fp32 file run on its defaults computes in. We
    pin f32. Not part of :func:`fingerprint`: importing OpenVINO costs ~0.5 s, which every val report and run record
    would pay; ``env`` shows it, and an OpenVINO run's own record carries the default it read."""
    try:
        import openvino as ov

        return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    except (ImportError, RuntimeError) as exc:
        return f"unknown ({str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__})"


def fingerprint() -> dict[str, str]:
    """A flat dict of strings describing this machine and process."""
    import cv2
    import numpy as np

    cpu_model, isa = _cpu()
    info = {
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model,
        "cpu.isa": isa,
        "cpu.int8_dot_product": int8_dot_product(),
        "cpu.count": str(os.cpu_count()),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "opencv.threads": str(cv2.getNumThreads()),
        "yoloparity": _version("yoloparity"),
        "onnx": _version("onnx"),
        "openvino": _version("openvino"),
        "ai-edge-litert": _version("ai-edge-litert"),
    }
    info.update(_torch_info())
    info["gpu.driver"] = _nvidia_driver() if info.get("gpus", "none") != "none" else "none"
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnxruntime.providers"] = ", ".join(ort.get_available_providers())
    except ImportError:
        info["onnxruntime"] = "not installed"
    for var in _ENV_VARS:
        info[f"env.{var}"] = os.environ.get(var, "unset")
    return info
