"""Running one job over processes and machines with torch.distributed: shared by ``val`` and ``predict``.

One code path, three ways in:

* one process (``--workers 1``): the worker runs in this process, no process group;
* ``--workers N``: this process starts N local workers with torch.distributed's elastic launcher
  (what ``torchrun`` uses) and watches them;
* ``torchrun --nnodes M --nproc-per-node N -m yoloparity <command> …``: every process is a worker.

A job (:class:`ShardedJob`) knows its run folder, its timeout and how to do one rank's work
(``work(progress)``: the whole run's result on rank 0, None elsewhere). Every rank works on a
contiguous, unpadded shard (:func:`shard_bounds`) and reports progress in ``progress-RRR.json``.
Faults end the run with the rank named: a dead worker is reported by the launcher; a worker with
no progress for ``timeout`` seconds is stopped by the watcher (``--workers``) or named by rank 0's
monitored barrier (torchrun). What a job keeps in its run folder is the job's business (finished
shards, for ``--resume``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Protocol

from .errors import YoloParityError
from .io.atomic import write_json
from .process_allocator import keep_large_buffers
from .process_settings import environ_restored, logger_levels, machine_threads

DEBUG_DELAY_ENV = "YOLOPARITY_DEBUG_DELAY"  # "RANK:SECONDS" — slow one rank down per image (fault-tolerance tests)


class DistributedRunError(YoloParityError):
    """A sharded run that did not complete: names the rank(s) and what happened."""


class ShardedJob(Protocol):
    """What :func:`run_sharded` runs; picklable, so the launcher can hand it to spawned processes."""

    run_dir: str
    timeout: float

    def work(self, progress: Callable[[int], None] | None = None) -> Any:
        """Run this process's share; rank 0 returns the result of the whole run."""


@dataclass(frozen=True)
class WorkerEnv:
    """This process's place in a run (rank, world size, local rank), from torchrun's variables."""
    rank: int
    world: int
    local_rank: int
    local_world: int

    @classmethod
    def from_environ(cls) -> "WorkerEnv":
        """The place torchrun (or the local launcher) gave this process; rank 0 of 1 otherwise."""
        e = os.environ
        world = int(e.get("WORLD_SIZE", 1))
        return cls(int(e.get("RANK", 0)), world, int(e.get("LOCAL_RANK", 0)), int(e.get("LOCAL_WORLD_SIZE", world)))


def launched_by_torchrun() -> bool:
    """Whether this process was started by torchrun (or the elastic launcher)."""
    return "TORCHELASTIC_RUN_ID" in os.environ and int(os.environ.get("WORLD_SIZE", 1)) > 1


def is_rank0() -> bool:
    """This process reports: the only one, or rank 0 of a torchrun launch."""
    return not launched_by_torchrun() or int(os.environ.get("RANK", 0)) == 0


def shard_bounds(n: int, world: int, rank: int) -> tuple[int, int]:
    """Contiguous, unpadded shard of ``n`` items: sizes differ by at most one, earlier ranks larger."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def worker_threads(requested: int | None, env: WorkerEnv) -> int:
    """Threads per worker: the request, or this machine's cores shared by the workers on it."""
    return requested or max(1, machine_threads() // max(env.local_world, 1))


def _progress_path(run_dir: str, rank: int) -> str:
    return os.path.join(run_dir, f"progress-{rank:03d}.json")


class ProgressWriter:
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
        """Write this rank's heartbeat file (images done, time), at most every half second unless forced."""
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
    """Every rank's last heartbeat that can be read, by rank."""
    out = {}
    for rank in range(world):
        try:
            with open(_progress_path(run_dir, rank)) as fh:
                out[rank] = json.load(fh)
        except (OSError, json.JSONDecodeError):
            continue
    return out


def device_for(device: str, env: WorkerEnv) -> str:
    """The device of this rank: with several ranks, ``cuda`` becomes one GPU per local rank; otherwise as given."""
    if device.startswith("cuda") and env.world > 1:
        import torch

        count = max(torch.cuda.device_count(), 1)
        return f"cuda:{env.local_rank % count}"  # one process per GPU; several share one when there are fewer
    return device


def init_process_group(env: WorkerEnv, device: str, timeout: float):
    """nccl when every local rank has its own GPU, else gloo; returns a gloo group for Python objects."""
    import torch
    import torch.distributed as dist

    use_nccl = device.startswith("cuda") and torch.cuda.device_count() >= env.local_world
    if use_nccl:
        torch.cuda.set_device(torch.device(device))  # nccl binds each rank to its own GPU
    dist.init_process_group("nccl" if use_nccl else "gloo", timeout=timedelta(seconds=timeout))
    return dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout)) if use_nccl else dist.group.WORLD


def wait_for_all_ranks(group, env: WorkerEnv, run_dir: str, timeout: float) -> None:
    """Rank 0 names the ranks that did not reach this point within ``timeout`` (a monitored barrier)."""
    import torch.distributed as dist

    try:
        dist.monitored_barrier(group=group, timeout=timedelta(seconds=timeout), wait_all_ranks=True)
    except RuntimeError as exc:
        raise DistributedRunError(run_dir, f"rank {env.rank}: {str(exc).splitlines()[0]} — those ranks did not finish "
                                  f"their shards within --timeout {timeout:g} s") from exc


def finish_process_group(group) -> None:
    """Leave the process group cleanly (a barrier, then destroy)."""
    import torch.distributed as dist

    dist.barrier(group=group)
    dist.destroy_process_group()


def _elastic_entry(job: ShardedJob) -> dict:
    """Entry point of a worker started by :func:`launch_local` (module level, so spawn can import it); a process of
    ours, so its allocator keeps large buffers as the command's does (:mod:`yoloparity.process_allocator`)."""
    from torch.distributed.elastic.multiprocessing.errors import record

    keep_large_buffers()

    @record
    def main() -> dict:
        return {"result": job.work()}

    return main()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Watcher(threading.Thread):
    """In the launching process: sums the ranks' progress and stops a rank silent for ``timeout`` s."""

    def __init__(self, run_dir: str, world: int, timeout: float, progress: Callable[[int], None] | None, kill: bool = True):
        super().__init__(daemon=True, name="yp-watcher")
        self.run_dir, self.world, self.timeout, self.progress, self.kill = run_dir, world, timeout, progress, kill
        self.stop = threading.Event()
        self.hung: dict[int, str] = {}
        self.shown = 0

    def run(self) -> None:
        """Sum the ranks' heartbeats into the progress bar and name (and stop) a rank that stops beating."""
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


def describe_failures(exc: Exception, hung: dict[int, str]) -> str:
    """One line naming each failed or hung rank and its error, from torch's launcher exception."""
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


def launch_local(job: ShardedJob, workers: int, progress: Callable[[int], None] | None = None) -> Any:
    """Start ``workers`` local processes with torch.distributed's elastic launcher; return rank 0's result."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    os.makedirs(job.run_dir, exist_ok=True)
    for rank in range(workers):  # stale heartbeats of an earlier run must not count
        try:
            os.remove(_progress_path(job.run_dir, rank))
        except FileNotFoundError:
            pass
    # the launcher's per-rank error files go to a folder of ours, removed after the launch: its default is a new
    # /tmp/torchelastic_* folder per launch, never removed (600 of them after a day of tests here). What a failed
    # rank wrote is read from the launcher's exception before the folder goes.
    launcher_logs = tempfile.mkdtemp(prefix="yoloparity-launch-")
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=workers, run_id=f"yoloparity-{os.getpid()}-{int(time.time())}",
        rdzv_backend="c10d", rdzv_endpoint=f"127.0.0.1:{_free_port()}", max_restarts=0, monitor_interval=0.2,
        start_method="spawn", logs_specs=DefaultLogsSpecs(log_dir=launcher_logs),
    )
    watcher = Watcher(job.run_dir, workers, job.timeout, progress)
    watcher.start()
    try:
        # the launcher's own log lines repeat what the error below says; quiet for this launch only
        with environ_restored(), logger_levels(("torch.distributed.elastic", "torch.distributed.launcher"), logging.CRITICAL):
            results = elastic_launch(config, _elastic_entry)(job)
    except ChildFailedError as exc:
        watcher.stop.set()
        raise DistributedRunError(
            job.run_dir, f"{describe_failures(exc, watcher.hung)}. Finished shards are kept here; rerun with --resume {job.run_dir}"
        ) from None
    finally:
        watcher.stop.set()
        watcher.join(timeout=2)
        shutil.rmtree(launcher_logs, ignore_errors=True)
    payload = results.get(0)
    if not payload or payload.get("result") is None:
        raise DistributedRunError(job.run_dir, "rank 0 returned no result")
    return payload["result"]


def default_run_dir(command: str) -> str:
    """``runs/<command>/<torchrun's run id or a timestamp>``: the same folder on every rank of a torchrun launch."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    name = run_id if run_id and run_id != "none" else time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    return os.path.join("runs", command, name)


def run_sharded(job: ShardedJob, workers: int = 1, progress: Callable[[int], None] | None = None) -> Any:
    """Run ``job`` one way or another; None on ranks other than 0 under torchrun."""
    if launched_by_torchrun():
        if workers > 1:
            raise YoloParityError(None, "--workers starts local processes; under torchrun use --nproc-per-node instead")
        env = WorkerEnv.from_environ()
        if env.rank != 0 or progress is None:
            return job.work()
        # rank 0 shows the images of every rank whose progress files it can see (all, on one node
        # or a shared filesystem); hangs are named by the monitored barrier, not by killing here
        watcher = Watcher(job.run_dir, env.world, job.timeout, progress, kill=False)
        watcher.start()
        try:
            return job.work()
        finally:
            watcher.stop.set()
            watcher.join(timeout=2)
    if workers > 1:
        return launch_local(job, workers, progress)
    return job.work(progress)
