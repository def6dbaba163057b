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

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from ..errors import InputNotFoundError
from ..io.detections import result_row
from ..io.jsonl import MergedOutputs, ShardWriter, read_chunks
from ..models.reference import reference_note
from ..sharding import (
    DistributedRunError,
    ProgressWriter,
    WorkerEnv,
    device_for,
    finish_process_group,
    init_process_group,
    run_sharded,
    shard_bounds,
    wait_for_all_ranks,
    worker_threads,
)

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class PredictSettings:
    """The predictor's settings as the user gave them (``imgsz`` None: the model's)."""

    imgsz: tuple[int, ...] | None = None
    mode: str = "rect"
    batch: int = 16
    conf: float = 0.25
    iou: float | None = None
    max_det: int = 300
    classes: tuple[int, ...] | None = None
    agnostic: bool = False
    decode_threads: int = 2
    strict: bool = False

    def __post_init__(self) -> None:  # one form however they were given (an int, a list, numpy ints)
        for name in ("imgsz", "classes"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, (int(value),) if isinstance(value, int) else tuple(int(v) for v in value))


@dataclass(frozen=True)
class PredictJob:
    """Everything a worker needs; picklable, so the launcher can hand it to spawned processes."""

    model: str
    sources: tuple[str, ...]
    run_dir: str
    settings: PredictSettings = PredictSettings()
    backend: str = "torch"
    device: str = "cpu"
    threads: int | None = None
    backend_options: dict = field(default_factory=dict)
    save_jsonl: str | None = None
    save_json: str | None = None
    save_dir: str | None = None
    resume: bool = False
    timeout: float = 600.0

    def work(self, progress: Callable[[int], None] | None = None) -> dict | None:
        """This process's part of the run (see :func:`run_worker`)."""
        return run_worker(self, progress)


def build_predictor(model, settings: PredictSettings, keep_images: bool = False, keep_raw: int = 0):
    """The predictor for ``settings`` on ``model``, with a note for every setting the backend had to change."""
    notes = list(model.notes)
    imgsz = list(settings.imgsz) if settings.imgsz else None
    asked = imgsz[0] if imgsz and len(set(imgsz)) == 1 else (tuple(imgsz) if imgsz else None)
    mode = settings.mode
    fit_mode, size, note = model.backend.constraints.fit_square(settings.mode, asked)
    if note:
        mode, imgsz = fit_mode, [size]
        notes.append(note)
    predictor = model.predictor(
        batch=settings.batch, imgsz=imgsz, mode=mode, conf=settings.conf, iou=settings.iou, max_det=settings.max_det,
        classes=settings.classes, agnostic=settings.agnostic, workers=settings.decode_threads, strict=settings.strict,
        keep_images=keep_images, keep_raw=keep_raw,
    )
    return predictor, notes


def fingerprint(model, predictor, files: list[str]) -> str:
    """What a shard's rows depend on: resuming with anything else changed must not reuse them."""
    o, th = predictor.options, predictor.thresholds
    key = json.dumps({"model": model.spec.sha256 or os.path.abspath(model.path), "backend": model.backend.name,
                      "device": model.backend.device, "precision": model.backend.precision, "head": model.spec.head_branch,
                      "imgsz": list(o.imgsz), "mode": o.mode, "preprocess": o.preprocess, "thresholds": asdict(th),
                      "files": hashlib.sha256("\n".join(files).encode()).hexdigest()}, sort_keys=True, default=list)
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def run_worker(job: PredictJob, progress: Callable[[int], None] | None = None, on_result: Callable | None = None,
               items: list | None = None) -> dict | None:
    """Predict this process's shard into its shard file; rank 0 merges and returns the run's summary.

    One process only: ``on_result`` hears every :class:`Result` too (e.g. to build a run record; its ``keep_raw``
    attribute, if any, keeps the raw outputs of the first K images, and its ``start(model, predictor)``, if any, is
    called before the first result); ``items`` are the resolved inputs when the caller has them already."""
    from ..model import load_model

    env = WorkerEnv.from_environ()
    start_time = time.perf_counter()
    os.makedirs(job.run_dir, exist_ok=True)  # on every node: the folder may be local to each machine
    device = device_for(job.device, env)
    group = init_process_group(env, device, job.timeout) if env.world > 1 else None
    model = load_model(job.model, backend=job.backend, device=device, threads=worker_threads(job.threads, env),
                       **job.backend_options)
    with model:
        return _predict_shard(job, env, group, model, items, progress, on_result, start_time)


def _predict_shard(job: PredictJob, env: WorkerEnv, group, model, items, progress, on_result, start_time: float):
    from ..data.sources import resolve_source, take
    from ..io.draw import save_drawn

    items = items if items is not None else resolve_source(list(job.sources))
    predictor, notes = build_predictor(model, job.settings, keep_images=bool(job.save_dir),
                                       keep_raw=getattr(on_result, "keep_raw", 0))
    if hasattr(on_result, "start"):
        on_result.start(model, predictor)
    lo, hi = shard_bounds(len(items), env.world, env.rank)
    files = [item.path for item in items[lo:hi]]
    shard = ShardWriter(job.run_dir, env.rank, env.world, fingerprint(model, predictor, files))
    heartbeat = ProgressWriter(job.run_dir, env.rank, hi - lo)
    summary = shard.finished() if job.resume else None
    if summary is not None:
        notes.append(f"rank {env.rank}: reused {os.path.basename(shard.path)} ({hi - lo} inputs)")
        heartbeat.done = hi - lo
        if progress:
            progress(hi - lo)
    else:
        start = shard.open(files, job.resume)
        if start:
            notes.append(f"rank {env.rank}: resumed {os.path.basename(shard.path)} after {start} of {hi - lo} inputs")
            heartbeat.done = start
            if progress:
                progress(start)

        def on_image(n: int) -> None:
            heartbeat(n)
            if progress:
                progress(n)

        try:
            for result in predictor.run(take(items, lo + start, hi), progress=on_image):
                shard.write(result_row(result))
                if job.save_dir and result.image is not None:
                    save_drawn(result, result.image, job.save_dir)
                if on_result is not None:
                    on_result(result)
        except BaseException:
            shard.close()  # the rows written so far stay in the .partial file, for --resume
            raise
        summary = shard.finish(predictor.times.to_dict())
    heartbeat.write(finished=True)
    summary = {**summary, "rank": env.rank, "host": os.uname().nodename, "notes": notes, "path": shard.path}
    if group is None:
        return _merge_and_summarize(job, model, [summary], len(items), start_time,
                                    lambda rank: read_chunks(summary["path"], CHUNK_BYTES))
    return _gather_and_merge(group, env, job, model, summary, len(items), start_time)


def _send_file(path: str, group) -> None:
    import torch
    import torch.distributed as dist

    dist.send(torch.tensor([os.path.getsize(path)], dtype=torch.int64), 0, group=group)
    for chunk in read_chunks(path, CHUNK_BYTES):
        dist.send(torch.frombuffer(bytearray(chunk), dtype=torch.uint8), 0, group=group)


def _receive_file(rank: int, group):
    import torch
    import torch.distributed as dist

    size = torch.zeros(1, dtype=torch.int64)
    dist.recv(size, rank, group=group)
    remaining = int(size.item())
    while remaining:
        piece = torch.empty(min(CHUNK_BYTES, remaining), dtype=torch.uint8)
        dist.recv(piece, rank, group=group)
        remaining -= piece.numel()
        yield piece.numpy().tobytes()


def _gather_and_merge(group, env: WorkerEnv, job: PredictJob, model, summary: dict, total: int, start_time: float):
    import torch.distributed as dist

    wait_for_all_ranks(group, env, job.run_dir, job.timeout)
    gathered = [None] * env.world if env.rank == 0 else None
    dist.gather_object(summary, gathered, dst=0, group=group)
    result = None
    if env.rank == 0:
        def chunks(rank: int):
            return read_chunks(summary["path"], CHUNK_BYTES) if rank == 0 else _receive_file(rank, group)

        result = _merge_and_summarize(job, model, gathered, total, start_time, chunks)
    elif job.save_jsonl or job.save_json:
        _send_file(summary["path"], group)
    finish_process_group(group)
    return result


def _merge_and_summarize(job: PredictJob, model, summaries: list[dict], total: int, start_time: float, chunks) -> dict:
    """Check every input is in exactly one finished shard, merge the rows in rank order, and sum up the run."""
    from ..pipeline.predictor import merge_times

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
                       merge_s=round(merge_s, 4), processes=len(summaries), model=model.path,
                       backend=model.backend.name, device=job.device, precision=model.backend.precision,
                       head=model.spec.head_branch or None, reference=predict_reference(model.spec, job),
                       notes=list(dict.fromkeys(n for s in summaries for n in s["notes"])), jsonl=job.save_jsonl,
                       json=job.save_json, run_dir=job.run_dir)


def predict_reference(spec, job: PredictJob) -> dict:
    """Which head ran and the reference predictor's command for the same detections (``models.reference``)."""
    st = job.settings
    settings = {"imgsz": list(st.imgsz) if st.imgsz else list(spec.imgsz), "mode": st.mode, "conf": st.conf,
                "iou": st.iou, "max_det": st.max_det, "classes": st.classes, "agnostic": st.agnostic}
    source = job.sources[0] if len(job.sources) == 1 else "SOURCE"  # the reference takes one source per command
    return reference_note(spec, "predict", job.model, source, settings)


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


def run_summary(counts: dict, wall: float, times: dict, **about) -> dict:
    """The summary every engine returns (``predict --json``): counts from :func:`add_counts`, the wall time, the stage
    times (:func:`merge_times`) and what the engine adds about the run (``about``)."""
    per_class, done = counts["per_class"], counts["images"]
    return {
        "inputs": counts["inputs"], "images": done, "skipped": len(counts["skipped"]), "failed": len(counts["failed"]),
        "errors": counts["skipped"] + counts["failed"], "detections": sum(per_class.values()),
        "per_class": dict(sorted(per_class.items(), key=lambda kv: -kv[1])), "wall_s": round(wall, 4),
        "images_per_s": round(done / wall, 3) if wall else None, "ms_per_image": times["ms_per_image"], **about,
    }


def predict_sharded(job: PredictJob, workers: int = 1, progress: Callable[[int], None] | None = None) -> dict | None:
    """Run ``job`` in this process, over ``workers`` local processes, or as this torchrun rank."""
    return run_sharded(job, workers, progress)
