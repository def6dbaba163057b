"""Run a Python command on an emulated AVX2-only x86 CPU (QEMU user mode, ``-cpu Haswell``).

ONNX Runtime and OpenVINO choose their int8 kernels from CPUID. Under ``qemu-x86_64 -cpu Haswell``
the process sees a CPU with AVX2 and no AVX-512 or VNNI, so the real AVX2 kernels run (emulated,
instruction for instruction: ``vpmaddubsw`` saturates as on the silicon). That lets a VNNI machine
measure what an AVX2 machine computes — accuracy, not speed — in benchmarks and tests.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys

AVX2_CPU = "Haswell"


def emulator() -> str | None:
    """The QEMU user-mode binary, where this is an x86-64 machine that has one."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    return shutil.which("qemu-x86_64")


def run_on_avx2(args: list[str], timeout: float = 1800, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python ARGS`` of this interpreter on the emulated AVX2 CPU; raises RuntimeError without QEMU."""
    qemu = emulator()
    if qemu is None:
        raise RuntimeError("qemu-x86_64 is not installed (Debian: apt-get install qemu-user); no AVX2 emulation here")
    full_env = {**os.environ, **(env or {}), "OMP_NUM_THREADS": "1"}
    return subprocess.run([qemu, "-cpu", AVX2_CPU, sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)
