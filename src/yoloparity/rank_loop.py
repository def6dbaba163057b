"""The one per-rank loop every sharded command runs: group, load, shard, heartbeat, resume, gather.

``val`` and ``predict`` differ only in what they do with a model and their inputs, so they plug a
:class:`RankWork` into :func:`run_rank` and the loop does the rest, the same way for both:

1. join the process group (several ranks), pick this rank's device and thread count (torch's thread count is
   set for the loop only and put back after), load the model — closed when the loop ends, whatever happens;
2. ``work.prepare(model)``: the whole ordered input list (the same on every rank) and the settings the rows
   depend on; this rank takes its contiguous, unpadded shard (:func:`~yoloparity.sharding.shard_bounds`);
3. one shard format: JSON Lines rows in ``shard-RRR-of-WWW.jsonl`` (``.partial`` while written), one row per
   input in input order, and ``shard-RRR-of-WWW.meta.json`` with one fingerprint (:func:`shard_fingerprint`:
   model, backend, device, precision, head, settings, the shard's inputs). ``--resume`` reuses a finished
   shard and continues an interrupted one after its last whole row; anything changed starts it over;
4. a heartbeat file per rank (``progress-RRR.json``) for the watcher and the progress bar;
5. rank 0 gathers every rank's summary and, when the work needs them, the rows themselves — each other rank
   streams its shard file over the group in 1 MiB pieces, so no shared filesystem is needed — and
   ``work.finish`` turns them into the result (predict: merged outputs; val: the COCO evaluation).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol

from .backends.registry import backend_info
from .io.jsonl import ShardWriter, read_chunks
from .process_settings import torch_threads
from .settings import LoadOptions
from .sharding import (
    ProgressWriter,
    WorkerEnv,
    device_for,
    finish_process_group,
    init_process_group,
    shard_bounds,
    wait_for_all_ranks,
    worker_threads,
)
from .yolo_model import YoloModel, load_model

CHUNK_BYTES = 1 << 20


@dataclass
class Prepared:
    """What a work made ready on the loaded model: the ordered inputs (``paths`` name them, for the resume check and
    the fingerprint), the settings the rows depend on, notes for the user, and anything the work keeps for later."""

    inputs: list
    paths: list[str]
    settings: dict
    notes: list[str] = field(default_factory=list)
    state: dict = field(default_factory=dict)


class RankWork(Protocol):
    """A job the loop runs. The job itself is picklable (the launcher hands it to spawned processes) and carries
    ``model``, ``load`` (how every rank loads it: the backend already decided), ``run_dir``, ``resume`` and
    ``timeout``."""

    model: str
    load: LoadOptions
    run_dir: str
    resume: bool
    timeout: float
    rows_to_rank0: bool  # rank 0 needs every rank's rows (val always; predict when it writes merged outputs)

    def prepare(self, model: YoloModel) -> Prepared:
        """The inputs and settings of the run, on this rank's model."""

    def rows(self, model: YoloModel, prepared: Prepared, inputs: list, on_image: Callable[[int], None]
             ) -> Iterator[dict]:
        """One JSON row per input of ``inputs``, in order; after the last, ``prepared.state["times"]`` holds the
        stage times."""

    def finish(self, model: YoloModel, prepared: Prepared, summaries: list[dict],
               chunks: Callable[[int], Iterable[bytes]], wall_start: float) -> Any:
        """Rank 0: the run's result from every rank's summary and (``chunks(rank)``) its rows' bytes."""


def shard_fingerprint(model: YoloModel, settings: dict, paths: list[str]) -> str:
    """What a shard's rows depend on (model, backend, device, precision asked and computed — TF32 on or off —, head
    branch, the work's settings, the shard's inputs): resuming with anything else changed must not reuse them."""
    key = json.dumps({"model": model.spec.sha256 or os.path.abspath(model.path), "backend": model.backend.name,
                      "device": model.backend.device, "precision": model.backend.precision,
                      "computes": model.backend.compute_precision().computes, "head_branch": model.spec.head_branch,
                      "settings": settings,
                      "inputs": hashlib.sha256("\n".join(paths).encode()).hexdigest()}, sort_keys=True, default=list)
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def run_rank(job: RankWork, progress: Callable[[int], None] | None = None) -> Any:
    """This process's part of ``job``; rank 0 returns the whole run's result, other ranks None."""
    env = WorkerEnv.from_environ()
    wall_start = time.perf_counter()
    os.makedirs(job.run_dir, exist_ok=True)  # on every node: the folder may be local to each machine
    device = device_for(job.load.device, env)
    group = init_process_group(env, device, job.timeout) if env.world > 1 else None
    threads = worker_threads(job.load.threads, env)
    with ExitStack() as stack:
        if backend_info(job.load.backend).process_wide_threads:  # torch's count is the process's: set here, put back after
            stack.enter_context(torch_threads(threads))
        model = stack.enter_context(load_model(job.model, options=job.load.replace(device=device, threads=threads)))
        prepared = job.prepare(model)
        summary = _run_shard(job, env, model, prepared, progress)
        if group is None:
            return job.finish(model, prepared, [summary], lambda rank: read_chunks(summary["path"], CHUNK_BYTES),
                              wall_start)
        return _gather(job, env, group, model, prepared, summary, wall_start)


def _run_shard(job: RankWork, env: WorkerEnv, model: YoloModel, prepared: Prepared, progress) -> dict:
    """This rank's shard: reused, resumed or written row by row; its summary (counts, times, notes, path)."""
    lo, hi = shard_bounds(len(prepared.inputs), env.world, env.rank)
    paths = prepared.paths[lo:hi]
    shard = ShardWriter(job.run_dir, env.rank, env.world, shard_fingerprint(model, prepared.settings, paths))
    heartbeat = ProgressWriter(job.run_dir, env.rank, hi - lo)
    notes = list(prepared.notes)
    summary = shard.finished() if job.resume else None
    if summary is not None:
        notes.append(f"rank {env.rank}: reused {os.path.basename(shard.path)} ({hi - lo} inputs)")
        _advance(heartbeat, progress, hi - lo)
    else:
        start = shard.open(paths, job.resume)
        if start:
            notes.append(f"rank {env.rank}: resumed {os.path.basename(shard.path)} after {start} of {hi - lo} inputs")
            _advance(heartbeat, progress, start)

        def on_image(n: int) -> None:
            heartbeat(n)
            if progress:
                progress(n)

        try:
            for row in job.rows(model, prepared, prepared.inputs[lo + start: hi], on_image):
                shard.write(row)
        except BaseException:
            shard.close()  # the rows written so far stay in the .partial file, for --resume
            raise
        summary = shard.finish(prepared.state.get("times", {}))
    heartbeat.write(finished=True)
    return {**summary, "rank": env.rank, "host": os.uname().nodename, "notes": notes, "path": shard.path}


def _advance(heartbeat: ProgressWriter, progress, n: int) -> None:
    heartbeat.done = n
    if progress:
        progress(n)


def _gather(job: RankWork, env: WorkerEnv, group, model: YoloModel, prepared: Prepared, summary: dict,
            wall_start: float) -> Any:
    """Every rank's summary to rank 0, then (when the work needs them) every rank's rows, streamed in rank order."""
    import torch.distributed as dist

    wait_for_all_ranks(group, env, job.run_dir, job.timeout)
    gathered = [None] * env.world if env.rank == 0 else None
    dist.gather_object(summary, gathered, dst=0, group=group)
    result = None
    if env.rank == 0:
        def chunks(rank: int):
            return read_chunks(summary["path"], CHUNK_BYTES) if rank == 0 else _receive_file(rank, group)

        result = job.finish(model, prepared, gathered, chunks, wall_start)
    elif job.rows_to_rank0:
        _send_file(summary["path"], group)
    finish_process_group(group)
    return result


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
