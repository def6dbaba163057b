#!/usr/bin/env bash
# Ultralytics (PyPI ultralytics==8.4.190) in its own environment, bench/.venv-ultralytics, for side-by-side benchmarks
# only (bench/trained_parity.py, bench/ultralytics_predict.py): the project's code and tests never import it. torch/torchvision are the releases the
# machine's pip constraints allow (a CPU run; several GB on x86_64).
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv-ultralytics/bin/python ] || python3 -m venv .venv-ultralytics
.venv-ultralytics/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv-ultralytics/bin/pip install -q "ultralytics==8.4.190" pycocotools
# its ONNX and OpenVINO exports and backends (bench/ultralytics_predict.py), the runtimes at our own versions, so a
# side-by-side compares the two predict paths, not two releases of a runtime
.venv-ultralytics/bin/pip install -q "onnxruntime==1.32.0" "openvino==2026.4.1" onnx onnxslim
.venv-ultralytics/bin/python -c "import ultralytics, torch; print('reference ultralytics', ultralytics.__version__, 'torch', torch.__version__)"
