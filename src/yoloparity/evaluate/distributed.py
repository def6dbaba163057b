"""Sharded validation: a :class:`ValJob` run by :mod:`yoloparity.sharding` (one process, ``--workers N`` or torchrun).

A worker validates its contiguous, unpadded shard of the image list sorted by name and writes its
predictions atomically as ``shard-RRR-of-WWW.json`` in the run folder. Rank 0 gathers the shards
over a gloo group, checks the image ids are exactly the dataset's, each once, and evaluates once.
Finished shard files stay, and ``--resume DIR`` reuses them.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable

from ..data.datasets import load_dataset
from ..model import load_model
from ..process_settings import torch_threads
from ..sharding import (
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
from .validator import (
    ValOptions,
    ValReport,
    build_report,
    effective_settings,
    fingerprint,
    load_shard,
    predict_images,
    save_shard,
    shard_path,
)


@dataclass(frozen=True)
class ValJob:
    """Everything a worker needs; picklable, so the launcher can hand it to spawned processes."""

    model: str
    data: str
    options: ValOptions
    run_dir: str
    backend: str = "torch"
    device: str = "cpu"
    split: str = "val"
    annotations: str | None = None
    gt_from_labels: bool = False
    resume: bool = False
    timeout: float = 600.0
    threads: int | None = None
    backend_options: dict = field(default_factory=dict)  # precision, int8_input: what load_model takes besides threads

    def work(self, progress: Callable[[int], None] | None = None) -> ValReport | None:
        """This process's part of the run (see :func:`run_worker`)."""
        return run_worker(self, progress)


def run_worker(job: ValJob, progress: Callable[[int], None] | None = None) -> ValReport | None:
    """Validate this process's shard; rank 0 returns the report of the whole run, other ranks None."""
    env = WorkerEnv.from_environ()
    start_time = time.perf_counter()
    device = device_for(job.device, env)
    group = init_process_group(env, device, job.timeout) if env.world > 1 else None
    threads = worker_threads(job.threads, env)
    with ExitStack() as stack:
        if job.backend == "torch":  # torch's thread count is the process's: set for this work, put back after
            stack.enter_context(torch_threads(threads))
        model = stack.enter_context(load_model(job.model, backend=job.backend, device=device, threads=threads,
                                               **job.backend_options))
        return _validate_shard(job, env, model, group, start_time, progress)


def _validate_shard(job: ValJob, env, model, group, start_time: float, progress) -> ValReport | None:
    dataset = load_dataset(job.data, job.split, job.annotations, model.spec.names, job.options.strict, job.gt_from_labels)
    options, notes = effective_settings(model, job.options)
    fp = fingerprint(model, dataset, options)
    lo, hi = shard_bounds(len(dataset.images), env.world, env.rank)
    shard = dataset.images[lo:hi]
    path = shard_path(job.run_dir, env.rank, env.world)
    loaded = load_shard(path, fp) if job.resume else None
    writer = ProgressWriter(job.run_dir, env.rank, len(shard))
    if loaded is not None:
        records, skipped, times = loaded
        writer.done = len(shard)
        if progress:
            progress(len(shard))
    else:
        def on_image(n: int) -> None:
            writer(n)
            if progress:
                progress(n)

        records, times = predict_images(model, shard, options, progress=on_image)
        skipped = list(times.get("errors", []))
        save_shard(path, fp, records, skipped, times)
    writer.write(finished=True)
    if loaded is not None:
        notes = notes + [f"rank {env.rank}: reused {os.path.basename(path)} ({len(records)} images)"]
    if group is None:
        return build_report(records, skipped, [times], dataset, options, notes, model, 1, time.perf_counter() - start_time)
    return _gather_and_report(group, env, job, records, skipped, times, notes, dataset, options, model, start_time)


def _gather_and_report(group, env, job, records, skipped, times, notes, dataset, options, model, start_time):
    import torch.distributed as dist

    wait_for_all_ranks(group, env, job.run_dir, job.timeout)
    gathered = [None] * env.world if env.rank == 0 else None
    dist.gather_object((records, skipped, times, notes), gathered, dst=0, group=group)
    report = None
    if env.rank == 0:
        all_records = [r for part in gathered for r in part[0]]
        all_skipped = [s for part in gathered for s in part[1]]
        all_notes = list(dict.fromkeys(n for part in gathered for n in part[3]))
        report = build_report(all_records, all_skipped, [part[2] for part in gathered], dataset, options, all_notes,
                              model, env.world, time.perf_counter() - start_time)
    finish_process_group(group)
    return report


def validate(job: ValJob, workers: int = 1, progress: Callable[[int], None] | None = None) -> ValReport | None:
    """Run validation one way or another; None on ranks other than 0 under torchrun."""
    return run_sharded(job, workers, progress)
