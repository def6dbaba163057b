"""Validation datasets: YOLO ``data.yaml`` (+ label files) or a COCO json with an image folder.

Either way the result is a :class:`Dataset`: the images sorted by file name (the order shards
are cut from), each with a stable integer id, the class names, the COCO category id of each
class index, and the ground truth in COCO form for the evaluator.

Ground truth comes from a COCO json when one is given (``--annotations``) or when a YOLO
dataset of the 80 COCO classes has exactly one ``annotations/instances*.json`` beside its images
(as the reference validators do for COCO); otherwise it is built from the YOLO label files. Label
problems are reported with file and line, counted, and the line skipped (``strict`` raises).
"""

from __future__ import annotations

import glob
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import InputNotFoundError, YoloParityError, read_json_file
from .coco_classes import COCO80_NAMES, COCO80_TO_91
from .sources import IMAGE_SUFFIXES


class DatasetError(YoloParityError):
    """A dataset file that cannot be used (missing split, bad yaml, inconsistent json)."""


@dataclass(frozen=True)
class LabelIssue:
    """A label problem found while reading a dataset (file, line, what is wrong), reported and counted."""
    file: str
    line: int
    problem: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.problem}" if self.line else f"{self.file}: {self.problem}"


@dataclass(frozen=True)
class ImageEntry:
    """One image of a dataset: its COCO id and path."""
    id: int
    path: str


@dataclass
class Dataset:
    """A dataset ready to evaluate: images sorted by name with ids, ground truth as COCO json (from a COCO
    file or converted from YOLO labels), the label issues found."""
    images: list[ImageEntry]
    names: tuple[str, ...]
    category_ids: tuple[int, ...]  # COCO category id of each class index
    gt: dict[str, Any]  # COCO-format ground truth (images, annotations, categories)
    gt_source: str
    issues: list[LabelIssue] = field(default_factory=list)

    def subset(self, entries: list[ImageEntry]) -> "Dataset":
        """The same dataset restricted to ``entries`` (ground truth of the other images dropped)."""
        ids = {e.id for e in entries}
        gt = dict(self.gt)
        gt["images"] = [im for im in self.gt["images"] if im["id"] in ids]
        gt["annotations"] = [a for a in self.gt["annotations"] if a["image_id"] in ids]
        return Dataset(list(entries), self.names, self.category_ids, gt, self.gt_source, list(self.issues))

    def issue_counts(self) -> dict[str, int]:
        """How many label issues of each kind were found."""
        return dict(Counter(i.problem.split(" (")[0] for i in self.issues))


def image_size(path: str) -> tuple[int, int] | None:
    """(height, width) from a JPEG or PNG header without decoding the image; None if unknown."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
                w, h = struct.unpack(">II", head[16:24])
                return int(h), int(w)
            if head[:2] != b"\xff\xd8":
                return None
            fh.seek(2)
            while True:
                marker = fh.read(2)
                if len(marker) < 2 or marker[0] != 0xFF:
                    return None
                while marker[1] == 0xFF:  # fill bytes
                    marker = marker[1:] + fh.read(1)
                kind = marker[1]
                if kind in (0xD8, 0x01) or 0xD0 <= kind <= 0xD7:
                    continue
                length = struct.unpack(">H", fh.read(2))[0]
                if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):
                    data = fh.read(5)
                    h, w = struct.unpack(">HH", data[1:5])
                    return int(h), int(w)
                fh.seek(length - 2, os.SEEK_CUR)
    except (OSError, struct.error):
        return None


def _image_files(entry: str, root: str) -> list[str]:
    path = entry if os.path.isabs(entry) else os.path.join(root, entry)
    if os.path.isdir(path):
        return [os.path.join(dp, f) for dp, _, fs in os.walk(path) for f in fs if f.lower().endswith(IMAGE_SUFFIXES)]
    if os.path.isfile(path) and path.endswith(".txt"):
        base = os.path.dirname(path)
        with open(path) as fh:
            lines = [ln.strip() for ln in fh if ln.strip()]
        return [ln if os.path.isabs(ln) else os.path.normpath(os.path.join(base, ln)) for ln in lines]
    if any(ch in path for ch in "*?["):
        return [f for f in glob.glob(path, recursive=True) if f.lower().endswith(IMAGE_SUFFIXES)]
    raise InputNotFoundError(path, "split path is neither a folder, a .txt list of images nor a glob")


def label_path(image_path: str) -> str:
    """The YOLO label file of an image: the last ``/images/`` becomes ``/labels/``, the suffix ``.txt``."""
    sep = os.sep
    marker = f"{sep}images{sep}"
    head, _, tail = image_path.rpartition(marker)
    path = f"{head}{sep}labels{sep}{tail}" if head or tail else image_path
    return os.path.splitext(path)[0] + ".txt"


def _is_coco80(names: tuple[str, ...]) -> bool:
    return tuple(n.lower() for n in names) == tuple(n.lower() for n in COCO80_NAMES)


def _image_id(path: str, index: int, numeric: bool) -> int:
    return int(os.path.splitext(os.path.basename(path))[0]) if numeric else index


def parse_label_file(path: str, nc: int) -> tuple[list[tuple[int, float, float, float, float]], list[LabelIssue]]:
    """Rows (class, cx, cy, w, h) normalized, and the problems of the lines that were skipped."""
    rows: list[tuple[int, float, float, float, float]] = []
    issues: list[LabelIssue] = []
    seen: set[tuple] = set()
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except UnicodeDecodeError:
        return [], [LabelIssue(path, 0, "malformed label file (not text)")]
    for number, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        try:
            values = [float(p) for p in parts]
        except ValueError:
            issues.append(LabelIssue(path, number, f"malformed line (non-numeric: {line.strip()[:40]!r})"))
            continue
        if len(values) < 5 or (len(values) > 5 and len(values) % 2 == 0):
            issues.append(LabelIssue(path, number, f"malformed line ({len(values)} values; expected 5, or a class and polygon)"))
            continue
        cls = values[0]
        if cls != int(cls) or not 0 <= cls < nc:
            issues.append(LabelIssue(path, number, f"class out of range ({parts[0]}, dataset has {nc} classes)"))
            continue
        if len(values) > 5:  # polygon: its bounding box, as the references do
            xs, ys = values[1::2], values[2::2]
            x1, x2, y1, y2 = min(xs), max(xs), min(ys), max(ys)
            box = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
        else:
            box = tuple(values[1:5])
        cx, cy, w, h = box
        if w <= 0 or h <= 0:
            issues.append(LabelIssue(path, number, "zero-size box"))
            continue
        if min(cx - w / 2, cy - h / 2) < -1e-3 or max(cx + w / 2, cy + h / 2) > 1 + 1e-3:
            issues.append(LabelIssue(path, number, "box not normalized (coordinates outside 0..1)"))
            continue
        row = (int(cls), cx, cy, w, h)
        if row in seen:
            issues.append(LabelIssue(path, number, "duplicate box"))
            continue
        seen.add(row)
        rows.append(row)
    return rows, issues


def _categories(names: tuple[str, ...], category_ids: tuple[int, ...]) -> list[dict]:
    return [{"id": cid, "name": name} for cid, name in zip(category_ids, names)]


def load_yolo_dataset(data_yaml: str, split: str = "val", annotations: str | None = None, strict: bool = False,
                      gt_from_labels: bool = False) -> Dataset:
    """Read a YOLO ``data.yaml`` split (images and labels folders, or a COCO json given as ``annotations``)."""
    if not os.path.isfile(data_yaml):
        raise InputNotFoundError(data_yaml, "no such dataset file")
    try:
        with open(data_yaml) as fh:
            cfg = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise DatasetError(data_yaml, f"not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(cfg, dict) or split not in cfg or "names" not in cfg:
        raise DatasetError(data_yaml, f"needs '{split}' and 'names' keys")
    names_cfg = cfg["names"]
    names = tuple(names_cfg[k] for k in sorted(names_cfg)) if isinstance(names_cfg, dict) else tuple(names_cfg)
    root = cfg.get("path") or "."
    root = root if os.path.isabs(root) else os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(data_yaml)), root))
    entries = cfg[split] if isinstance(cfg[split], list) else [cfg[split]]
    files = sorted({os.path.normpath(f) for e in entries for f in _image_files(str(e), root)}, key=os.path.basename)
    if not files:
        raise InputNotFoundError(data_yaml, f"split '{split}' lists no images")
    coco80 = _is_coco80(names)
    category_ids = tuple(COCO80_TO_91) if coco80 else tuple(range(1, len(names) + 1))
    if annotations is None and coco80 and not gt_from_labels:
        found = sorted(glob.glob(os.path.join(root, "annotations", "instances*.json")))
        annotations = found[0] if len(found) == 1 else None
    if annotations:
        return _with_coco_json(files, names, category_ids, annotations)
    numeric = coco80 and all(os.path.splitext(os.path.basename(f))[0].isdigit() for f in files)
    images, anns, issues, gt_images = [], [], [], []
    for index, path in enumerate(files):
        image_id = _image_id(path, index, numeric)
        images.append(ImageEntry(image_id, path))
        size = image_size(path)
        lpath = label_path(path)
        rows, problems = parse_label_file(lpath, len(names)) if os.path.exists(lpath) else ([], [])
        issues.extend(problems)
        if size is None:
            continue  # an undecodable image is reported by the predictor; it has no ground truth size
        h, w = size
        gt_images.append({"id": image_id, "file_name": os.path.basename(path), "height": h, "width": w})
        for cls, cx, cy, bw, bh in rows:
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": category_ids[cls], "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0})
    if strict and issues:
        raise DatasetError(str(issues[0].file), f"{len(issues)} label problems, first: {issues[0]} (strict mode)")
    gt = {"images": gt_images, "annotations": anns, "categories": _categories(names, category_ids)}
    return Dataset(images, names, category_ids, gt, f"YOLO labels ({len(anns)} boxes)", issues)


def _with_coco_json(files: list[str], names: tuple[str, ...], category_ids: tuple[int, ...], annotations: str) -> Dataset:
    gt = read_coco_json(annotations)
    by_name = {os.path.basename(img["file_name"]): img for img in gt["images"]}
    images = []
    missing = [f for f in files if os.path.basename(f) not in by_name]
    if missing:
        raise DatasetError(annotations, f"{len(missing)} images have no entry in the annotations, first: {os.path.basename(missing[0])}")
    for path in files:
        images.append(ImageEntry(int(by_name[os.path.basename(path)]["id"]), path))
    keep = {e.id for e in images}
    gt = {**gt, "images": [i for i in gt["images"] if i["id"] in keep],
          "annotations": [a for a in gt["annotations"] if a["image_id"] in keep]}
    cat_names = {c["id"]: c["name"] for c in gt["categories"]}
    by_cat_name = {n.lower(): cid for cid, n in cat_names.items()}
    if all(n.lower() in by_cat_name for n in names):
        category_ids = tuple(by_cat_name[n.lower()] for n in names)
    elif len(cat_names) == len(names):
        category_ids = tuple(sorted(cat_names))
    else:
        raise DatasetError(annotations, f"its {len(cat_names)} categories cannot be matched to the model's {len(names)} classes")
    return Dataset(images, names, category_ids, gt, f"COCO json {annotations}", [])


def read_coco_json(path: str) -> dict[str, Any]:
    """Read a COCO annotations file; a missing or malformed one is an error naming it."""
    gt = read_json_file(path, "annotations file", DatasetError)
    if not isinstance(gt, dict) or not all(k in gt for k in ("images", "annotations", "categories")):
        raise DatasetError(path, "not a COCO annotations file (needs images, annotations, categories)")
    return gt


def load_coco_dataset(image_dir: str, annotations: str, names: tuple[str, ...] | None = None) -> Dataset:
    """A folder of images with a COCO json; class names from the model (matched by name) or the json."""
    if not os.path.isdir(image_dir):
        raise InputNotFoundError(image_dir, "no such image folder")
    gt = read_coco_json(annotations)
    files = sorted((os.path.join(image_dir, os.path.basename(i["file_name"])) for i in gt["images"]), key=os.path.basename)
    absent = [f for f in files if not os.path.exists(f)]
    if absent:
        raise InputNotFoundError(absent[0], f"listed in {annotations} but not in the image folder ({len(absent)} missing)")
    if names is None:
        names = tuple(c["name"] for c in sorted(gt["categories"], key=lambda c: c["id"]))
    category_ids = tuple(COCO80_TO_91) if _is_coco80(names) else tuple(range(1, len(names) + 1))
    return _with_coco_json(files, names, category_ids, annotations)


def check_model_classes(dataset: Dataset, model_names: tuple[str, ...], data: str) -> str | None:
    """Before any work: a dataset must name every class the model predicts. Fewer names than classes is an error
    naming both counts (the model's extra class ids have nowhere to go); more names, or names that differ from the
    model's own at the same index, a one-line warning (returned) — the figures are still computed by class index."""
    have, want = len(dataset.names), len(model_names)
    if have < want:
        raise DatasetError(data, f"names {have} classes but the model predicts {want}: a model trained on this dataset "
                                 "has as many classes as its names (is it the right data.yaml for this model?)")
    if have > want:
        return (f"{data} names {have} classes but the model predicts {want}: classes {want}..{have - 1} "
                f"({', '.join(dataset.names[want:want + 3])}{', ...' if have - want > 3 else ''}) can never be detected")
    generic = all(n == f"class{i}" for i, n in enumerate(model_names))  # a file that carries no names
    differ = [i for i, (a, b) in enumerate(zip(model_names, dataset.names)) if a.strip().lower() != b.strip().lower()]
    if differ and not generic:
        i = differ[0]
        return (f"{len(differ)} of the {want} class names differ between the model and {data} (first: class {i} is "
                f"'{model_names[i]}' in the model, '{dataset.names[i]}' in the dataset); classes are matched by index")
    return None


def train_split_files(data_yaml: str) -> list[str]:
    """The image files a data.yaml's ``train`` split lists (empty when it has none or it cannot be read): quantize
    calibrates on them when they are not the val images."""
    try:
        with open(data_yaml) as fh:
            cfg = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError):
        return []
    if not isinstance(cfg, dict) or not cfg.get("train"):
        return []
    root = cfg.get("path") or "."
    root = root if os.path.isabs(root) else os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(data_yaml)), root))
    entries = cfg["train"] if isinstance(cfg["train"], list) else [cfg["train"]]
    try:
        return sorted({os.path.normpath(f) for e in entries for f in _image_files(str(e), root)})
    except YoloParityError:
        return []


def load_dataset(data: str, split: str = "val", annotations: str | None = None, names: tuple[str, ...] | None = None,
                 strict: bool = False, gt_from_labels: bool = False) -> Dataset:
    """``data`` is a data.yaml, or an image folder together with ``annotations`` (COCO json)."""
    if data.endswith((".yaml", ".yml")):
        return load_yolo_dataset(data, split, annotations, strict, gt_from_labels)
    if os.path.isdir(data):
        if not annotations:
            raise DatasetError(data, "an image folder needs --annotations instances.json (or give a data.yaml)")
        return load_coco_dataset(data, annotations, names)
    raise InputNotFoundError(data, "no such dataset (give a data.yaml, or an image folder with --annotations)")
