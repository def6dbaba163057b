"""``predict`` over processes and machines: a :class:`PredictJob` run by :mod:`yoloparity.sharding`.

Every rank resolves the same source list (deterministic: folders and globs sorted by name, list
files in line order), predicts its contiguous, unpadded shard and streams one JSON Lines row per
input to its shard file as results arrive (:mod:`yoloparity.io.jsonl`). Rank 0 then streams the
shards, in rank order, into the requested outputs: each other rank sends its file over the gloo
group in 1 MiB pieces, so no shared filesystem is needed and no process holds a whole shard.
Because detections do not depend on which images are batched together, the merged rows are the
bytes one process writes.

``--resume DIR`` reuses finished shards and continues an interrupted one after its last whole row.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from ..data.sources import resolve_source
from ..errors import InputNotFoundError
from ..io.detections import result_row
from ..io.draw import save_drawn
from ..io.jsonl import MergedOutputs
from ..models.reference_commands import reference_note
from ..pipeline.predictor import merge_times
from ..rank_loop import Prepared, run_rank
from ..sharding import DistributedRunError, run_sharded
from ..settings import InferenceSettings, LoadOptions
from .summary import PredictSummary, run_summary


@dataclass(frozen=True)
class PredictJob:
    """Everything a worker needs; picklable, so the launcher can hand it to spawned processes. The per-rank loop
    (:func:`yoloparity.rank_loop.run_rank`) runs it: :meth:`prepare`, :meth:`rows` and, on rank 0, :meth:`finish`.

    ``on_result`` and ``items`` exist in one process only (they do not travel to spawned workers): ``on_result``
    hears every :class:`Result` (e.g. to build a run record; its ``keep_raw`` attribute, if any, keeps the raw
    outputs of the first K images, and its ``start(model, predictor)``, if any, is called before the first
    result); ``items`` are the resolved inputs when the caller has them already."""

    model: str
    sources: tuple[str, ...]
    run_dir: str
    settings: InferenceSettings = InferenceSettings()
    load: LoadOptions = LoadOptions()
    save_jsonl: str | None = None
    save_json: str | None = None
    save_dir: str | None = None
    resume: bool = False
    timeout: float = 600.0
    on_result: Callable | None = field(default=None, repr=False, compare=False)
    items: list | None = field(default=None, repr=False, compare=False)

    @property
    def rows_to_rank0(self) -> bool:
        """Rank 0 needs the other ranks' rows only to write the merged outputs."""
        return bool(self.save_jsonl or self.save_json)

    def work(self, progress: Callable[[int], None] | None = None) -> dict | None:
        """This process's part of the run (the per-rank loop)."""
        return run_rank(self, progress)

    def prepare(self, model) -> Prepared:
        """The resolved inputs and the predictor, with a note for every setting the backend had to change."""
        items = self.items if self.items is not None else resolve_source(list(self.sources))
        predictor, notes = build_predictor(model, self.settings, keep_images=bool(self.save_dir),
                                           keep_raw=getattr(self.on_result, "keep_raw", 0))
        if hasattr(self.on_result, "start"):
            self.on_result.start(model, predictor)
        o = predictor.settings
        settings = {"imgsz": list(o.imgsz), "mode": o.mode, "preprocess": o.preprocess, "thresholds": asdict(o.thresholds)}
        return Prepared(items, [item.path for item in items], settings, notes, {"predictor": predictor})

    def rows(self, model, prepared: Prepared, inputs: list, on_image: Callable[[int], None]):
        """One JSON Lines row per input (drawn into ``save_dir`` and handed to ``on_result`` on the way)."""
        predictor = prepared.state["predictor"]
        for result in predictor.run(inputs, progress=on_image):
            if self.save_dir and result.image is not None:
                save_drawn(result, result.image, self.save_dir)
            if self.on_result is not None:
                self.on_result(result)
            yield result_row(result)
        prepared.state["times"] = predictor.times.to_dict()

    def finish(self, model, prepared: Prepared, summaries: list[dict], chunks, wall_start: float) -> dict:
        """Check every input is in exactly one finished shard, merge the rows in rank order, sum up the run."""
        return _merge_and_summarize(self, model, summaries, len(prepared.inputs), wall_start, chunks)


def build_predictor(model, settings: InferenceSettings, keep_images: bool = False, keep_raw: int = 0):
    """The predictor for ``settings`` on ``model``, with a note for every setting the backend had to change."""
    predictor = model.predictor(settings, keep_images=keep_images, keep_raw=keep_raw)
    return predictor, list(model.notes) + predictor.notes


def _merge_and_summarize(job: PredictJob, model, summaries: list[dict], total: int, start_time: float,
                         chunks) -> PredictSummary:
    """Check every input is in exactly one finished shard, merge the rows in rank order, and sum up the run."""
    counts = add_counts(summaries, total, job.run_dir)  # before any output file is made
    t_merge = time.perf_counter()
    outputs = MergedOutputs(job.save_jsonl, job.save_json)
    if outputs.targets:
        try:
            for s in summaries:
                outputs.add(chunks(s["rank"]))
        except BaseException:
            outputs.close(ok=False)
            raise
        if outputs.rows != total:
            outputs.close(ok=False)
            raise DistributedRunError(job.run_dir, f"merged {outputs.rows} rows for {total} inputs")
        outputs.close()
    merge_s = time.perf_counter() - t_merge
    return run_summary(counts, time.perf_counter() - start_time, merge_times([s["times"] for s in summaries]),
                       run_about(model, job.load.device, job.settings, predict_reference(model.spec, job)),
                       merge_s=round(merge_s, 4), processes=len(summaries),
                       notes=list(dict.fromkeys(n for s in summaries for n in s["notes"])), jsonl=job.save_jsonl,
                       json=job.save_json, run_dir=job.run_dir)


def run_about(model, device: str, settings: InferenceSettings, reference: dict) -> dict:
    """What every engine's summary says of the run: the model file, backend, device, precision asked and what the
    runtime computes in (:class:`~yoloparity.backends.compute_precision.ComputePrecision`), head branch, the
    reference command and the size with where it came from."""
    return {"model": model.path, "backend": model.backend.name, "device": device, "precision": model.backend.precision,
            "computes": model.backend.compute_precision().to_dict(), "head_branch": model.spec.head_branch or None,
            "reference": reference, "size": model.spec.size_note(settings.imgsz)}


def predict_reference(spec, job: PredictJob) -> dict:
    """Which head ran and the reference predictor's command for the same detections (``models.reference_commands``)."""
    return settings_reference(spec, job.model, job.sources, job.settings)


def settings_reference(spec, model: str, sources, st: InferenceSettings) -> dict:
    """The reference predictor's command for ``st`` on ``sources`` (``models.reference_commands``)."""
    settings = {"imgsz": list(st.imgsz) if st.imgsz else list(spec.imgsz), "mode": st.mode, "conf": st.conf,
                "iou": st.iou, "max_det": st.max_det, "classes": st.classes, "agnostic": st.agnostic}
    source = sources[0] if len(sources) == 1 else "SOURCE"  # the reference takes one source per command
    return reference_note(spec, "predict", model, source, settings)


def add_counts(parts: list[dict], total: int, where: str | None) -> dict:
    """The counts of every shard (:meth:`ShardCounts.to_dict`) as one, checked: every input in exactly one row, and
    at least one image done (else one line saying why: the single input's own error, or the count and an example)."""
    counts = {"images": sum(p["images"] for p in parts), "skipped": [e for p in parts for e in p["skipped"]],
              "failed": [e for p in parts for e in p["failed"]], "per_class": {}, "inputs": total}
    for part in parts:
        for name, n in part["per_class"].items():
            counts["per_class"][name] = counts["per_class"].get(name, 0) + n
    rows = counts["images"] + len(counts["skipped"]) + len(counts["failed"])
    if rows != total:
        raise DistributedRunError(where, f"the results hold {rows} rows for {total} inputs")
    if counts["images"] == 0:
        errors = counts["skipped"] + counts["failed"]
        if len(errors) == 1:
            raise InputNotFoundError(None, errors[0])
        raise InputNotFoundError(None, f"no image could be read: {len(errors)} inputs skipped, e.g. {errors[0]}"
                                 if errors else "no image could be read")
    return counts


def predict_sharded(job: PredictJob, workers: int = 1, progress: Callable[[int], None] | None = None,
                    ) -> PredictSummary | None:
    """Run ``job`` in this process, over ``workers`` local processes, or as this torchrun rank."""
    return run_sharded(job, workers, progress)
