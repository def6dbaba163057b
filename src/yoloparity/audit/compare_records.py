"""``compare``: the audit's comparison between two run records, e.g. made on two machines.

Records carry detections, letterboxes and (optionally) raw outputs, not candidates, so a one-sided
detection is ``borderline`` only when its score is within epsilon of the confidence threshold —
epsilon measured from the two records' raw outputs of that image when both kept them, else the
``score_noise`` tolerance — and ``real`` otherwise. Preprocessing differences (other input shapes)
are named per image, and every setting and fingerprint entry that differs is listed.
"""

from __future__ import annotations

import numpy as np

from .match import match
from .record import Record, RecordError

EPS_FLOOR = 1e-6


def _diff_dict(a: dict, b: dict, prefix: str) -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, "absent"), b.get(key, "absent")
        if va != vb:
            out.append(f"{prefix}{key}: {va} vs {vb}")
    return out


def compare_records(a: Record, b: Record, score_noise: float = 1e-3, real_allowed: int = 0) -> dict:
    if a.data["model"]["sha256"] and b.data["model"]["sha256"] and a.data["model"]["sha256"] != b.data["model"]["sha256"]:
        raise RecordError(b.path, f"records are of different models (sha256 {a.data['model']['sha256'][:12]}… vs "
                                  f"{b.data['model']['sha256'][:12]}…); compare runs of the same model file")
    ia, ib = a.images, b.images
    if set(ia) != set(ib):
        only_a, only_b = sorted(set(ia) - set(ib)), sorted(set(ib) - set(ia))
        raise RecordError(b.path, f"records are of different image sets ({len(only_a)} only in {a.path}, {len(only_b)} only "
                                  f"in {b.path}, e.g. {(only_a or only_b)[0]})")
    conf = float(a.data["settings"].get("conf", 0.25))
    names = a.data["model"]["spec"]["names"]
    per_class: dict[str, list[int]] = {}
    differences, localization, ious, score_deltas = [], [], [], []
    for key in sorted(ia):
        da, db = a.detections(key), b.detections(key)
        for cls, n in da.counts_per_class().items():
            per_class.setdefault(names[cls], [0, 0])[0] += n
        for cls, n in db.counts_per_class().items():
            per_class.setdefault(names[cls], [0, 0])[1] += n
        m = match(da, db)
        ious += [p[2] for p in m.pairs]
        score_deltas += [float(db.scores[j] - da.scores[i]) for i, j, _ in m.pairs]
        lba, lbb = ia[key]["letterbox"], ib[key]["letterbox"]
        same_input = lba and lbb and lba["input_hw"] == lbb["input_hw"]
        raw_a, raw_b = a.raws.get(key), b.raws.get(key)
        if raw_a is not None and raw_b is not None and raw_a.shape == raw_b.shape:
            eps, measured = max(2 * float(np.abs(raw_a - raw_b).max(initial=0.0)), EPS_FLOOR), True
        else:
            eps, measured = score_noise, False
        for side, dets, idx in (("A", da, m.only_a), ("B", db, m.only_b)):
            for i in idx:
                score = float(dets.scores[i])
                borderline = bool(same_input) and abs(score - conf) <= eps
                differences.append({"file": key, "side": side, "class_id": int(dets.class_ids[i]), "score": round(score, 5),
                                    "kind": "borderline" if borderline else "real",
                                    "reason": (f"score within {eps:.2g} ({'measured' if measured else 'assumed'}) of conf {conf}"
                                               if borderline else "far from the threshold, or the inputs differ")})
        if (m.only_a or m.only_b) and not same_input:
            localization.append({"file": key, "stage": "preprocessing",
                                 "detail": f"input {lba and 'x'.join(map(str, lba['input_hw']))} vs {lbb and 'x'.join(map(str, lbb['input_hw']))}"})
    real = sum(d["kind"] == "real" for d in differences)
    return {
        "verdict": "pass" if real <= real_allowed else "fail",
        "a": a.path, "b": b.path,
        "images": len(ia),
        "images_differing": len({d["file"] for d in differences}),
        "real": real,
        "borderline": len(differences) - real,
        "per_class": {k: {"A": v[0], "B": v[1]} for k, v in sorted(per_class.items())},
        "iou_min": min(ious) if ious else None,
        "score_delta_max": float(np.abs(score_deltas).max()) if score_deltas else None,
        "settings_differences": _diff_dict(a.data["settings"], b.data["settings"], "settings.")
        + _diff_dict(a.data["backend"], b.data["backend"], "backend."),
        "environment_differences": _diff_dict(a.data["environment"], b.data["environment"], ""),
        "localization": localization[:200],
        "differences": differences[:200],
    }
