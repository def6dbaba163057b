#!/usr/bin/env bash
# Create .venv and install yoloparity with everything it needs, on a fresh machine.
# PyTorch is installed first as the CPU wheel when no GPU is present: an unpinned `torch`
# would pull a multi-GB CUDA build. Set TORCH_SPEC to override (e.g. TORCH_SPEC="torch==2.14.1").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    .venv/bin/pip install -q "${TORCH_SPEC:-torch}"
  else
    .venv/bin/pip install -q "${TORCH_SPEC:-torch==2.13.0}"
  fi
fi
.venv/bin/pip install -q -e ".[dev]"
# the TFLite converter lives in its own environment (.venv-tflite; see scripts/setup_tflite.sh)
bash scripts/setup_tflite.sh
# headless Chromium: a test renders the audit's HTML report in it; QEMU user mode: tests and benchmarks run
# ONNX Runtime's AVX2 int8 kernels on an emulated AVX2 CPU (qemu-x86_64 -cpu Haswell) where this CPU has VNNI.
# Both are optional: their tests skip, saying why, where they cannot be installed.
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v qemu-x86_64 >/dev/null 2>&1 || missing="$missing qemu-user"
if [ -n "$missing" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) \
    || echo "note:$missing could not be installed; the tests that need them will be skipped"
fi
.venv/bin/python -c "import yoloparity, torch, onnxruntime; print('yoloparity', yoloparity.__version__, '| torch', torch.__version__, '| onnxruntime', onnxruntime.__version__)"
