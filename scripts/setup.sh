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
# headless Chromium: a test renders the audit's HTML report in it (skipped where it cannot be installed)
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "note: chromium could not be installed; the HTML rendering test will be skipped"
fi
.venv/bin/python -c "import yoloparity, torch, onnxruntime; print('yoloparity', yoloparity.__version__, '| torch', torch.__version__, '| onnxruntime', onnxruntime.__version__)"
