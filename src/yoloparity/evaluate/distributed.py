"""Sharded validation over processes, GPUs and nodes with torch.distributed.

One code path, three ways in:

* one process (``--workers 1``): the worker runs in this process, no process group;
* ``--workers N``: this process starts N local workers with torch.distributed's elastic launcher
  (what ``torchrun`` uses) and watches them;
* ``torchrun --nnodes M --nproc-per-node N -m yoloparity val …``: every process is a worker.

A worker validates a contiguous, unpadded shard of the image list sorted by name, writes its
predictions atomically as ``shard-RRR-of-WWW.json`` in the run folder, and reports progress in
``progress-RRR.json``. Rank 0 gathers the shards over a gloo group, checks the image ids are
exactly the dataset's, each once, and evaluates once. Faults end the run with the rank named:
a dead worker is reported by the launcher; a worker with no progress for ``--timeout`` seconds
is stopped by the watcher (``--workers``) or named by rank 0's monitored barrier (torchrun).
Finished shard files stay, and ``--resume DIR`` reuses them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Callable

from ..io.atomic import write_json
from ..errors import YoloParityError
from .validator import (
    ValOptions,
    ValReport,
    build_report,
    effective_settings,
    fingerprint,
    load_shard,
    predict_images,
    save_shard,
    shard_bounds,
    shard_path,
)

DEBUG_DELAY_ENV = "YOLOPARITY_DEBUG_DELAY"  # "RANK:SECONDS" — slow one rank down per image (fault-tolerance tests)


class DistributedRunError(YoloParityError):
    """A sharded run that did not complete: names the rank(s) and what happened."""


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


@dataclass(frozen=True)
class WorkerEnv:
    rank: int
    world: int
    local_rank: int
    local_world: int

    @classmethod
    def from_environ(cls) -> "WorkerEnv":
        e = os.environ
        world = int(e.get("WORLD_SIZE", 1))
        return cls(int(e.get("RANK", 0)), world, int(e.get("LOCAL_RANK", 0)), int(e.get("LOCAL_WORLD_SIZE", world)))


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ and int(os.environ.get("WORLD_SIZE", 1)) > 1


def is_rank0() -> bool:
    """This process reports: the only one, or rank 0 of a torchrun launch."""
    return not launched_by_torchrun() or int(os.environ.get("RANK", 0)) == 0


def _progress_path(run_dir: str, rank: int) -> str:
    return os.path.join(run_dir, f"progress-{rank:03d}.json")


class _ProgressWriter:
    """Writes this rank's image count and a heartbeat at most every half second, and at the end."""

    def __init__(self, run_dir: str, rank: int, total: int, done: int = 0):
        self.path, self.rank, self.total, self.done = _progress_path(run_dir, rank), rank, total, done
        self.last = 0.0
        self.delay = 0.0
        spec = os.environ.get(DEBUG_DELAY_ENV, "")
        if spec.count(":") == 1 and spec.split(":")[0] == str(rank):
            self.delay = float(spec.split(":")[1])
        self.write(force=True)

    def write(self, force: bool = False, finished: bool = False) -> None:
        now = time.time()
        if force or finished or now - self.last >= 0.5:
            write_json(self.path, {"rank": self.rank, "pid": os.getpid(), "host": socket.gethostname(),
                                          "done": self.done, "total": self.total, "time": now, "finished": finished})
            self.last = now

    def __call__(self, n: int) -> None:
        self.done += n
        if self.delay:
            time.sleep(self.delay)
        self.write()


def read_progress(run_dir: str, world: int) -> dict[int, dict]:
    out = {}
    for rank in range(world):
        try:
            with open(_progress_path(run_dir, rank)) as fh:
                out[rank] = json.load(fh)
        except (OSError, json.JSONDecodeError):
            continue
    return out


def _device_for(device: str, env: WorkerEnv) -> str:
    if device.startswith("cuda") and env.world > 1:
        import torch

        count = max(torch.cuda.device_count(), 1)
        return f"cuda:{env.local_rank % count}"  # one process per GPU; several share one when there are fewer
    return device


def _init_process_group(env: WorkerEnv, device: str, timeout: float):
    import torch
    import torch.distributed as dist

    use_nccl = device.startswith("cuda") and torch.cuda.device_count() >= env.local_world
    if use_nccl:
        torch.cuda.set_device(torch.device(device))  # nccl binds each rank to its own GPU
    dist.init_process_group("nccl" if use_nccl else "gloo", timeout=timedelta(seconds=timeout))
    return dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout)) if use_nccl else dist.group.WORLD


def run_worker(job: ValJob, progress: Callable[[int], None] | None = None) -> ValReport | None:
    """Validate this process's shard; rank 0 returns the report of the whole run, other ranks None."""
    from ..data.datasets import load_dataset
    from ..model import load_model

    env = WorkerEnv.from_environ()
    start_time = time.perf_counter()
    device = _device_for(job.device, env)
    group = _init_process_group(env, device, job.timeout) if env.world > 1 else None
    threads = job.threads or max(1, (os.cpu_count() or 1) // max(env.local_world, 1))
    if job.backend == "torch":
        import torch

        torch.set_num_threads(threads)
    model = load_model(job.model, backend=job.backend, device=device, threads=threads, **job.backend_options)
    dataset = load_dataset(job.data, job.split, job.annotations, model.spec.names, job.options.strict, job.gt_from_labels)
    options, notes = effective_settings(model, job.options)
    fp = fingerprint(model, dataset, options)
    lo, hi = shard_bounds(len(dataset.images), env.world, env.rank)
    shard = dataset.images[lo:hi]
    path = shard_path(job.run_dir, env.rank, env.world)
    loaded = load_shard(path, fp) if job.resume else None
    writer = _ProgressWriter(job.run_dir, env.rank, len(shard))
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

    try:
        dist.monitored_barrier(group=group, timeout=timedelta(seconds=job.timeout), wait_all_ranks=True)
    except RuntimeError as exc:
        raise DistributedRunError(job.run_dir, f"rank {env.rank}: {str(exc).splitlines()[0]} — those ranks did not finish "
                                  f"their shards within --timeout {job.timeout:g} s") from exc
    gathered = [None] * env.world if env.rank == 0 else None
    dist.gather_object((records, skipped, times, notes), gathered, dst=0, group=group)
    report = None
    if env.rank == 0:
        all_records = [r for part in gathered for r in part[0]]
        all_skipped = [s for part in gathered for s in part[1]]
        all_notes = list(dict.fromkeys(n for part in gathered for n in part[3]))
        report = build_report(all_records, all_skipped, [part[2] for part in gathered], dataset, options, all_notes,
                              model, env.world, time.perf_counter() - start_time)
    dist.barrier(group=group)
    dist.destroy_process_group()
    return report


def _elastic_entry(job: ValJob) -> dict | None:
    """Entry point of a worker started by :func:`launch_local` (module level, so spawn can import it)."""
    from torch.distributed.elastic.multiprocessing.errors import record

    @record
    def main() -> dict | None:
        report = run_worker(job)
        return None if report is None else _report_payload(report)

    return main()


def _report_payload(report: ValReport) -> dict:
    return {"report": report}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Watcher(threading.Thread):
    """In the launching process: sums the ranks' progress and stops a rank silent for ``timeout`` s."""

    def __init__(self, run_dir: str, world: int, timeout: float, progress: Callable[[int], None] | None, kill: bool = True):
        super().__init__(daemon=True, name="yp-watcher")
        self.run_dir, self.world, self.timeout, self.progress, self.kill = run_dir, world, timeout, progress, kill
        self.stop = threading.Event()
        self.hung: dict[int, str] = {}
        self.shown = 0

    def run(self) -> None:
        started = time.time()
        while not self.stop.wait(0.25):
            states = read_progress(self.run_dir, self.world)
            done = sum(s.get("done", 0) for s in states.values())
            if self.progress and done > self.shown:
                self.progress(done - self.shown)
                self.shown = done
            now = time.time()
            for rank in range(self.world):
                state = states.get(rank)
                last = state["time"] if state else started
                if not self.kill or rank in self.hung or (state and state.get("finished")) or now - last < self.timeout:
                    continue
                self.hung[rank] = f"rank {rank} made no progress for {now - last:.0f} s (--timeout {self.timeout:g})"
                if state and state.get("host") == socket.gethostname():
                    try:
                        os.kill(int(state["pid"]), signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass


def _describe_failures(exc: Exception, hung: dict[int, str]) -> str:
    failures = getattr(exc, "failures", {}) or {}
    parts = []
    for rank, failure in sorted(failures.items()):
        if rank in hung:
            parts.append(f"{hung[rank]}; it was stopped")
            continue
        code = getattr(failure, "exitcode", None)
        message = getattr(failure, "message", "") or ""
        if isinstance(message, dict):
            message = message.get("message", "")
        detail = str(message).strip().splitlines()
        if code is not None and code < 0:
            try:
                what = f"died from signal {signal.Signals(-code).name}"
            except ValueError:
                what = f"died from signal {-code}"
        else:
            what = f"failed with exit code {code}"
        reason = next((line for line in reversed(detail) if line.strip()), "")
        if "Signal" in reason or "signal" in reason or "<NO_OTHER_FAILURES>" in reason:
            reason = ""
        parts.append(f"rank {rank} {what}" + (f": {reason[:300]}" if reason else ""))
    for rank, text in sorted(hung.items()):
        if rank not in failures:
            parts.append(text)
    return "; ".join(parts) or str(exc).splitlines()[0]


def launch_local(job: ValJob, workers: int, progress: Callable[[int], None] | None = None) -> ValReport:
    """Start ``workers`` local processes with torch.distributed's elastic launcher; return rank 0's report."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    for name in ("torch.distributed.elastic", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    os.makedirs(job.run_dir, exist_ok=True)
    for rank in range(workers):  # stale heartbeats of an earlier run must not count
        try:
            os.remove(_progress_path(job.run_dir, rank))
        except FileNotFoundError:
            pass
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=workers, run_id=f"yoloparity-{os.getpid()}-{int(time.time())}",
        rdzv_backend="c10d", rdzv_endpoint=f"127.0.0.1:{_free_port()}", max_restarts=0, monitor_interval=0.2,
        start_method="spawn",
    )
    watcher = _Watcher(job.run_dir, workers, job.timeout, progress)
    watcher.start()
    try:
        results = elastic_launch(config, _elastic_entry)(job)
    except ChildFailedError as exc:
        watcher.stop.set()
        raise DistributedRunError(
            job.run_dir, f"{_describe_failures(exc, watcher.hung)}. Finished shards are kept here; rerun with --resume {job.run_dir}"
        ) from None
    finally:
        watcher.stop.set()
        watcher.join(timeout=2)
    payload = results.get(0)
    if not payload or "report" not in payload:
        raise DistributedRunError(job.run_dir, "rank 0 returned no report")
    return payload["report"]


def default_run_dir() -> str:
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    name = run_id if run_id and run_id != "none" else time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    return os.path.join("runs", "val", name)


def validate(job: ValJob, workers: int = 1, progress: Callable[[int], None] | None = None) -> ValReport | None:
    """Run validation one way or another; None on ranks other than 0 under torchrun."""
    if launched_by_torchrun():
        if workers > 1:
            raise YoloParityError(None, "--workers starts local processes; under torchrun use --nproc-per-node instead")
        env = WorkerEnv.from_environ()
        if env.rank != 0 or progress is None:
            return run_worker(job)
        # rank 0 shows the images of every rank whose progress files it can see (all, on one node
        # or a shared filesystem); hangs are named by the monitored barrier, not by killing here
        watcher = _Watcher(job.run_dir, env.world, job.timeout, progress, kill=False)
        watcher.start()
        try:
            return run_worker(job)
        finally:
            watcher.stop.set()
            watcher.join(timeout=2)
    if workers > 1:
        return launch_local(job, workers, progress)
    return run_worker(replace(job), progress=progress)

