#!/usr/bin/env bash
# litert-torch (PyTorch -> LiteRT directly, no TensorFlow) and ai-edge-quantizer in their own environment,
# bench/.venv-litert-torch, for bench/tflite_converters.py only: the converter comparison of issue 27. torch is the
# CPU release the project uses (an unpinned torch would pull a multi-GB CUDA build).
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv-litert-torch/bin/python ] || python3 -m venv .venv-litert-torch
.venv-litert-torch/bin/pip install -q "torch==2.13.0" "litert-torch==0.10.0" opencv-python-headless
.venv-litert-torch/bin/python -c "import litert_torch, ai_edge_quantizer, torch; print('litert-torch', litert_torch.__version__, 'torch', torch.__version__)"
