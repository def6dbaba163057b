"""``yoloparity predict``: detect objects in images, folders, globs and videos."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import Counter

from ..errors import InputNotFoundError
from .common import add_model_args, backend_options, progress_bar


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="detect objects in images, folders, globs or videos",
        description="Batched, batch-invariant inference: every image is letterboxed on its own and batched only "
        "with images of the same input shape, so its detections do not depend on --batch.",
    )
    p.add_argument("model", help="a .pt checkpoint (YOLOv5, YOLOv8, YOLO11), an .onnx export, or an official name like yolov5n.pt")
    p.add_argument("source", nargs="+", help="image file(s), folder(s), glob(s) or video file(s)")
    add_model_args(p)
    p.add_argument("--imgsz", type=int, nargs="+", default=None, metavar="N",
                   help="inference size: one value (square) or height width (default: the model's, usually 640)")
    p.add_argument("--batch", type=int, default=16, help="images per batch (default: 16); results do not depend on it")
    p.add_argument("--conf", type=float, default=0.25, help="score threshold (default: 0.25)")
    p.add_argument("--iou", type=float, default=None, help="NMS IoU threshold (default: 0.45 for YOLOv5, 0.7 for YOLOv8/11)")
    p.add_argument("--max-det", type=int, default=300, help="most detections kept per image (default: 300)")
    p.add_argument("--classes", type=int, nargs="+", default=None, metavar="ID", help="keep only these class ids")
    p.add_argument("--agnostic", action="store_true", help="class-agnostic NMS")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--rect", dest="mode", action="store_const", const="rect",
                      help="pad each image only to the next stride multiple (default)")
    mode.add_argument("--square", dest="mode", action="store_const", const="square", help="pad every image to imgsz x imgsz")
    p.set_defaults(mode="rect")
    p.add_argument("--decode-threads", type=int, default=2, help="image decoding threads (default: 2)")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable image instead of skipping it")
    p.add_argument("--save-json", metavar="FILE", help="write detections as JSON: one object per image, in input order")
    p.add_argument("--save-dir", metavar="DIR", help="write each image with its detections drawn")
    p.add_argument("--save-record", metavar="FILE", help="write a run record (settings, fingerprint, per-image letterbox "
                   "and detections) for `yoloparity compare`")
    p.add_argument("--record-raw", type=int, default=8, metavar="K",
                   help="with --save-record: keep the raw head outputs of the first K images (default: 8)")
    p.add_argument("--json", action="store_true", help="print the run summary (counts, timings, skipped files) as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..data.sources import resolve_source
    from ..model import load_model
    from ..report.console import format_class_counts, format_stage_times
    from ..report.draw import save_drawn
    from ..report.jsonio import write_results_json

    options = backend_options(args)
    model = load_model(args.model, backend=args.backend, device=args.device, **options)
    items = resolve_source(args.source if len(args.source) > 1 else args.source[0])
    mode, imgsz, notes = args.mode, args.imgsz, []
    asked = args.imgsz[0] if args.imgsz and len(set(args.imgsz)) == 1 else (tuple(args.imgsz) if args.imgsz else None)
    for note in model.notes:
        notes.append(note)
        print(f"note: {note}", file=sys.stderr)
    fit_mode, size, note = model.backend.constraints.fit_square(args.mode, asked)
    if note:
        mode, imgsz = fit_mode, [size]
        notes.append(note)
        print(f"note: {note}", file=sys.stderr)
    predictor = model.predictor(
        batch=args.batch, imgsz=imgsz, mode=mode, conf=args.conf, iou=args.iou, max_det=args.max_det,
        classes=args.classes, agnostic=args.agnostic, workers=args.decode_threads, strict=args.strict,
        keep_images=bool(args.save_dir), keep_raw=args.record_raw if args.save_record else 0,
    )
    kept, counts, skipped = [], Counter(), []
    with progress_bar(len(items), args.quiet, "predict") as bar:
        for result in predictor.run(items, progress=bar.update):
            if not result.ok:
                skipped.append(result.error)
                if len(items) > 1:  # a single input's error is the one line below
                    bar.write(f"warning: skipped {result.error}", file=sys.stderr)
                continue
            for cid in result.detections.class_ids:
                counts[model.spec.names[int(cid)]] += 1
            if args.save_dir and result.image is not None:
                save_drawn(result, result.image, args.save_dir)
            kept.append(dataclasses.replace(result, image=None))  # the raw output stays, when kept for the record
    if not kept:  # nothing to write: say why in one line and leave no output files behind
        detail = skipped[0] if len(skipped) == 1 else f"{len(skipped)} inputs skipped, e.g. {skipped[0]}" if skipped else ""
        raise InputNotFoundError(None, f"no image could be read: {detail}" if len(skipped) != 1 else detail)
    stats = predictor.times.to_dict()
    stats.update(model=model.path, backend=args.backend, device=args.device, detections=sum(counts.values()),
                 per_class=dict(counts), notes=notes)
    if args.save_json:
        write_results_json(kept, args.save_json)
        stats["json"] = args.save_json
    if args.save_record:
        from ..auditing.record import build_record, entries_from_results, save_record

        th, po = predictor.thresholds, predictor.options
        settings = {"conf": th.conf, "iou": th.iou if th.iou is not None else model.spec.default_iou, "max_det": th.max_det,
                    "classes": list(th.classes) if th.classes else None, "agnostic": th.agnostic, "batch": po.batch,
                    "imgsz": list(po.imgsz), "mode": po.mode, "threads": args.threads}
        images, raw_outputs = entries_from_results(kept)
        record, raws = build_record("predict", model, settings, images, raw_outputs, predictor.times.to_dict())
        save_record(args.save_record, record, raws)
        stats["record"] = args.save_record
    if args.save_dir:
        stats["save_dir"] = args.save_dir
    if args.json:
        print(json.dumps(stats, indent=1))
    else:
        print(format_stage_times(stats))
        print(f"{stats['detections']} detections" + (":" if counts else ""))
        if counts:
            print(format_class_counts(dict(counts)))
        for key, label in (("json", "JSON written to"), ("save_dir", "drawn images in"), ("record", "run record written to")):
            if key in stats:
                print(f"{label} {stats[key]}")
    return 0
