"""What ``bench`` recommends: the fastest configuration that gives the reference's answer, proven two ways.

A configuration qualifies when

1. an audit (:func:`yoloparity.audit`) of its detections against the reference on a few of the bench images finds
   no real difference (differences beyond the float noise the audit derives its tolerances from), and
2. its mAP50-95 drop from the reference on the labelled images, with a paired bootstrap interval over the images
   (:mod:`yoloparity.evaluate.bootstrap`), is shown inside the budget: the interval's upper end at most ``budget``.

Float and int8, every backend: a float path that matches and is faster beats an int8 one that does not, and an
int8 path is recommended only where both proofs hold. The reference is torch fp32 at the smallest batch run (the
checkpoint as trained), else the first fp32 configuration that ran.
"""

from __future__ import annotations

from typing import Callable

from ..auditing.spec import RunConfig
from ..backends.registry import DEFAULT_PRECISION, backend_info, is_default_precision
from ..evaluate.bootstrap import PerImageEvaluation, budget_verdict, paired_bootstrap

AUDIT_IMAGES = 4
BUDGET = 0.005


def _label(row: dict) -> str:
    return f"{row['backend']} {row['precision']} b{row['batch']}"


def _reference(ok: list[dict]) -> dict | None:
    floats = [r for r in ok if is_default_precision(r["precision"])]
    # the checkpoint's own network first (torch), at its smallest batch: what every other path is an export of
    own = sorted((r for r in floats if backend_info(r["backend"]).runs_checkpoint), key=lambda r: r["batch"])
    return own[0] if own else (floats[0] if floats else None)


def _audit_counts(model: str, images: list[str], rows: list[dict], reference: dict, imgsz: int,
                  log: Callable[[str], None]) -> dict[str, dict]:
    """Real differences per configuration label (or the reason the audit could not say)."""
    from ..auditing.audit import run_audit
    from ..auditing.compare import Tolerances

    def config(row: dict) -> RunConfig:
        """The bench row as an audit configuration: a backend that runs its file's own precision (an int8 or fp16
        file made for it) is given that file at precision fp32, the others the precision they were asked for."""
        info = backend_info(row["backend"])
        as_saved = info.runs_file_precision and not is_default_precision(row["precision"])
        return RunConfig(backend=row["backend"], precision=DEFAULT_PRECISION if as_saved else row["precision"],
                         batch=row["batch"], imgsz=imgsz, mode=row.get("extra", {}).get("mode", "rect"),
                         model=None if info.runs_checkpoint else row["model_file"])

    others = [r for r in rows if r is not reference]
    if not others:
        return {}
    log(f"recommend: auditing {len(others)} configurations against {_label(reference)} on {len(images)} images")
    try:
        result = run_audit(model, images, [config(r) for r in others], config(reference), 1, False, Tolerances(),
                           gallery_size=0)
    except Exception as exc:  # the audit's failure is the recommendation's reason, never a crash of bench
        return {_label(r): {"real": None, "reason": f"audit failed: {str(exc).splitlines()[0][:200]}"} for r in others}
    counts = {}
    for row, cfg, why in zip(others, result.report.configs, result.report.verdict.reasons):
        counts[_label(row)] = {"real": cfg.real, "borderline": cfg.borderline, "images": cfg.images_compared,
                               "reason": "; ".join(why)}
    return counts


def recommend(model: str, rows: list[dict], coco: dict[str, list], images: list[str], dataset, imgsz: int,
              budget: float = BUDGET, resamples: int = 200, log: Callable[[str], None] = print) -> dict:
    """The fastest configuration with no real difference in the audit and its drop interval inside ``budget``;
    every configuration's evidence in ``candidates``, and in ``reason`` why none qualified when none did.
    ``coco``: each configuration's COCO result rows on ``dataset`` (by label), as its worker measured them."""
    ok = [r for r in rows if r["status"] == "ok" and r.get("images_per_s")]
    reference = _reference(ok)
    if reference is None:
        return {"choice": None, "reason": "no fp32 configuration ran to serve as the reference", "candidates": []}
    audits = _audit_counts(model, images[:AUDIT_IMAGES], ok, reference, imgsz, log)
    ref_eval = None
    if dataset is not None and coco.get(_label(reference)) is not None:
        ref_eval = PerImageEvaluation(dataset, coco[_label(reference)])
    ids = [e.id for e in dataset.images] if dataset is not None else []
    candidates = []
    for row in ok:
        label = _label(row)
        entry = {"label": label, "backend": row["backend"], "precision": row["precision"], "batch": row["batch"],
                 "images_per_s": row["images_per_s"]["median"], "audit": audits.get(label, {"real": 0, "reason": ""})}
        if row is reference:
            entry["audit"] = {"real": 0, "reason": "the reference"}
        why = []
        if entry["audit"]["real"] is None or entry["audit"]["real"] > 0:
            why.append(entry["audit"]["reason"] or f"{entry['audit']['real']} real differences in the audit")
        if ref_eval is not None and coco.get(label) is not None:
            interval = paired_bootstrap(ref_eval, PerImageEvaluation(dataset, coco[label]), ids, resamples)
            verdict = budget_verdict(interval, budget)
            entry["drop"], entry["verdict"] = interval.to_dict(), verdict.to_dict()
            if verdict.status != "within":
                why.append(f"drop {interval}: {verdict.text}")
        else:
            entry["drop"], entry["verdict"] = None, None
            why.append("no mAP measured (give --data)")
        entry["qualifies"], entry["why_not"] = not why, why
        candidates.append(entry)
    good = [c for c in candidates if c["qualifies"]]
    choice = max(good, key=lambda c: c["images_per_s"]) if good else None
    reason = "" if choice else "no configuration both matched the reference in the audit and had its drop shown " \
                               f"inside {budget}"
    return {"reference": _label(reference), "budget": budget, "audit_images": min(AUDIT_IMAGES, len(images)),
            "choice": choice, "reason": reason, "candidates": candidates}
