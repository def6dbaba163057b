"""Ultralytics' own int8 export recipe, then its own validator on the exported file: the field's int8, for comparison.

Runs inside the reference environment (bench/.venv-ultralytics: `bash bench/setup_reference_ultralytics.sh`, then
`bench/.venv-ultralytics/bin/pip install nncf` for OpenVINO int8), never inside the project's. The checkpoint is
copied to a scratch folder first (the exporter writes beside it), exported with
`export(format=..., int8=True, data=DATA)` — Ultralytics calibrates on DATA's val images — and validated with
`val(data=DATA, batch=1)`. The predictions (COCO rows, class indices 0..nc-1) and the exported file's path go to
``--out``; the file itself is kept in ``--keep`` for timing in the project's environment.

    bench/.venv-ultralytics/bin/python bench/reference_ultralytics_int8.py MODEL.pt DATA.yaml --format openvino --keep DIR --out r.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from reference_ultralytics import absolute_data_yaml, to_class_indices  # this folder, run as a script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("data", help="a YOLO data.yaml")
    ap.add_argument("--format", choices=("openvino", "tflite"), required=True)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--keep", required=True, help="folder to keep the exported int8 file in")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import ultralytics
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory() as tmp:
        local = absolute_data_yaml(args.data, tmp)
        model = Path(tmp) / Path(args.model).name
        shutil.copy(args.model, model)
        start = time.perf_counter()
        exported = YOLO(str(model)).export(format=args.format, int8=True, data=str(local), imgsz=args.imgsz, batch=1,
                                           device="cpu")
        export_s = time.perf_counter() - start
        validator = YOLO(str(exported), task="detect").val(
            data=str(local), batch=1, imgsz=args.imgsz, device="cpu", save_json=True, plots=False, verbose=False,
            project=tmp, name="val", exist_ok=True, workers=0)
        predictions = json.loads((Path(tmp) / "val" / "predictions.json").read_text())
        keep = Path(args.keep)
        keep.mkdir(parents=True, exist_ok=True)
        target = keep / Path(exported).name
        if Path(exported).is_dir():
            shutil.copytree(exported, target, dirs_exist_ok=True)
        else:
            shutil.copy(exported, target)
    to_class_indices(predictions)
    Path(args.out).write_text(json.dumps({
        "ultralytics": ultralytics.__version__, "format": args.format, "export_s": export_s, "file": str(target),
        "speed_ms": dict(validator.speed), "predictions": predictions}))
    print(f"{len(predictions)} predictions, exported {target}")


if __name__ == "__main__":
    main()
