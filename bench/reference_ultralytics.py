"""Ultralytics' own validator on a YOLO dataset, for side-by-side figures only.

Runs inside the reference environment (bench/.venv-ultralytics, made by bench/setup_reference_ultralytics.sh),
never inside the project's: the project's code and tests never import ``ultralytics``. It validates one checkpoint
with one head and batch size and writes the reference's COCO predictions (its ``predictions.json``) and the
settings it ran with to ``--out`` as JSON; the caller scores them with the same pycocotools call it uses for ours.

    bench/.venv-ultralytics/bin/python bench/reference_ultralytics.py MODEL.pt DATA.yaml --head one2many --batch 1 --out ref.json

``--head`` for end-to-end checkpoints (YOLOv10, YOLO26): ``one2one`` runs the reference with ``nms=False`` (its
end-to-end top-k, no NMS); ``one2many`` with ``nms=None``, its default in 8.4.190 (the one-to-many head + NMS).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def absolute_data_yaml(data_path: str, folder: str) -> Path:
    """A copy of the data.yaml in ``folder`` with an absolute dataset path: Ultralytics resolves a relative one
    against its own datasets folder."""
    import yaml

    data = yaml.safe_load(Path(data_path).read_text())
    root = (Path(data_path).parent / data.get("path", ".")).resolve()
    local = Path(folder) / "data.yaml"
    local.write_text(yaml.safe_dump({**data, "path": str(root)}))
    return local


def to_class_indices(predictions: list[dict]) -> None:
    """Without a COCO val2017 path the reference numbers classes 1..nc (its class_map): back to indices 0..nc-1."""
    for p in predictions:
        p["class_index"] = p.pop("category_id") - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("data", help="a YOLO data.yaml")
    ap.add_argument("--head", choices=("one2one", "one2many", "default"), default="default")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import ultralytics
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory() as tmp:
        local = absolute_data_yaml(args.data, tmp)
        kwargs = {"nms": False} if args.head == "one2one" else {}
        start = time.perf_counter()
        YOLO(args.model).val(data=str(local), batch=args.batch, imgsz=args.imgsz, device="cpu", save_json=True,
                             plots=False, verbose=False, project=tmp, name="val", exist_ok=True, workers=0, **kwargs)
        wall = time.perf_counter() - start
        predictions = json.loads((Path(tmp) / "val" / "predictions.json").read_text())
    to_class_indices(predictions)
    Path(args.out).write_text(json.dumps({"ultralytics": ultralytics.__version__, "head": args.head, "batch": args.batch,
                                          "imgsz": args.imgsz, "wall_s": wall, "predictions": predictions}))
    print(f"{len(predictions)} predictions -> {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()
