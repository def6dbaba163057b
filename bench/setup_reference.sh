#!/usr/bin/env bash
# The reference YOLOv5 (PyPI yolov5==7.0.14) in its own environment, bench/.venv-ref, for side-by-side
# benchmarks only: the project's code and tests never import it. torch/torchvision come from the
# releases the machine's pip constraints allow (a CPU run; several GB on x86_64).
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv-ref/bin/python ] || python3 -m venv .venv-ref
.venv-ref/bin/pip install -q "torch==2.14.1" "torchvision==0.29.1"
# yolov5 7.0 imports pkg_resources (setuptools < 81) and calls np.trapz (numpy < 2)
.venv-ref/bin/pip install -q "yolov5==7.0.14" pycocotools "setuptools<81" "numpy<2" "opencv-python<4.11"
.venv-ref/bin/python -c "import yolov5, torch; print('reference yolov5', yolov5.__version__, 'torch', torch.__version__)"
