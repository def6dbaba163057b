#!/usr/bin/env bash
# Create .venv-tflite: the converter environment for `yoloparity quantize --format tflite-int8`
# (onnx2tf + TensorFlow, ~2.4 GB). yoloparity runs it as a subprocess (YOLOPARITY_TFLITE_PYTHON);
# it is never imported into .venv. Set SKIP_TFLITE=1 to skip it (the TFLite export tests then skip).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ "${SKIP_TFLITE:-0}" = 1 ]; then
  echo "SKIP_TFLITE=1: .venv-tflite not made"; exit 0
fi
if [ ! -x .venv-tflite/bin/python ]; then
  "$PY" -m venv .venv-tflite
fi
if ! .venv-tflite/bin/python -c "import onnx2tf, tensorflow" 2>/dev/null; then
  .venv-tflite/bin/pip install -q -r scripts/tflite-requirements.txt
fi
.venv-tflite/bin/python -c "import onnx2tf, tensorflow as tf; print('tflite converter: onnx2tf', onnx2tf.__version__, '| tensorflow', tf.__version__)" 2>/dev/null | tail -1
