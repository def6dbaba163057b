"""predict at scale: sharded over processes (torch.distributed), over Ray actors, resumable, flat in memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import wait_for

from yoloparity.api import predict_files
from yoloparity.cli import main


def _list_file(path: Path, files: list[str]) -> str:
    path.write_text("\n".join(files) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, coco_images):
    """The 206 coco-val-mini images with a truncated copy of one of them in the middle: 207 inputs, one unreadable."""
    root = tmp_path_factory.mktemp("inputs")
    broken = root / "broken.jpg"
    broken.write_bytes(Path(coco_images[100]).read_bytes()[:3000])
    files = coco_images[:100] + [str(broken)] + coco_images[100:]
    return _list_file(root / "all.txt", files), files


@pytest.fixture(scope="module")
def one_process(inputs, yolov5n_pt, tmp_path_factory):
    """The reference: one process, no process group, the --save-json of old and the JSON Lines."""
    out = tmp_path_factory.mktemp("one")
    summary = predict_files(yolov5n_pt, inputs[0], batch=16, save_jsonl=str(out / "p.jsonl"), save_json=str(out / "p.json"))
    return summary, (out / "p.jsonl").read_bytes(), (out / "p.json").read_bytes()


def _check_reference(summary, jsonl: bytes, files: list[str]) -> None:
    rows = [json.loads(line) for line in jsonl.splitlines()]
    assert [r["file"] for r in rows] == files  # one row per input, in input order
    assert summary.inputs == 207 and summary.images == 206 and summary.skipped == 1 and summary.failed == 0
    assert "broken.jpg" in summary.errors[0] and "truncated JPEG" in summary.errors[0]
    assert rows[100] == {"file": files[100], "error": summary.errors[0], "stage": "input"}
    assert summary.detections == sum(len(r.get("detections", ())) for r in rows) > 500


@pytest.mark.slow
@pytest.mark.parametrize("workers,batch", [(3, 7)])  # 2 workers: tests/test_entry_points.py
def test_workers_write_the_bytes_one_process_writes(inputs, one_process, yolov5n_pt, tmp_path, workers, batch):
    summary1, jsonl1, json1 = one_process
    _check_reference(summary1, jsonl1, inputs[1])
    summary = predict_files(yolov5n_pt, inputs[0], workers=workers, batch=batch, run_dir=str(tmp_path / "run"),
                            save_jsonl=str(tmp_path / "p.jsonl"), save_json=str(tmp_path / "p.json"))
    assert (tmp_path / "p.jsonl").read_bytes() == jsonl1
    assert (tmp_path / "p.json").read_bytes() == json1
    assert summary.processes == workers
    assert {k: getattr(summary, k) for k in ("inputs", "images", "skipped", "failed", "errors", "detections", "per_class")} \
        == {k: getattr(summary1, k) for k in ("inputs", "images", "skipped", "failed", "errors", "detections", "per_class")}
    shards = sorted(p.name for p in (tmp_path / "run").glob("shard-*.jsonl"))
    assert shards == [f"shard-{r:03d}-of-{workers:03d}.jsonl" for r in range(workers)]
    sizes = [len((tmp_path / "run" / s).read_bytes().splitlines()) for s in shards]
    assert sum(sizes) == 207 and max(sizes) - min(sizes) <= 1  # contiguous, unpadded


@pytest.mark.slow
def test_ray_batch_sizes_and_actors_do_not_change_a_detection(inputs, one_process, yolov5n_pt, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is the optional extra yoloparity[ray]")
    pytest.importorskip("ray.data")
    _, jsonl1, json1 = one_process
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        seen = {}
        for batch in (37,):  # the one-process reference ran at batch 16: another cut of the same rows
            out = tmp_path / f"b{batch}"
            summary = predict_files(yolov5n_pt, inputs[0], engine="ray", workers=2, batch=batch,
                                    save_jsonl=str(out / "p.jsonl"), save_json=str(out / "p.json"))
            assert (out / "p.jsonl").read_bytes() == jsonl1
            assert (out / "p.json").read_bytes() == json1
            assert summary.skipped == 1 and summary.images == 206 and "broken.jpg" in summary.errors[0]
            seen[batch] = summary.ray_batch_sizes
        # Ray really cut the rows differently: the largest batch each run handed an actor is its batch_size
        assert max(int(b) for b in seen[37]) == 37
    finally:
        ray.shutdown()


def _rows(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_killed_rank_is_named_and_resume_completes_the_same_rows(yolov5n_pt, coco_images, tmp_path):
    files = coco_images[:45]  # 15 inputs per rank: the mechanics
    source = _list_file(tmp_path / "set.txt", files)
    expected = tmp_path / "one.jsonl"
    predict_files(yolov5n_pt, source, save_jsonl=str(expected))
    run = tmp_path / "run"
    env = {**os.environ, "YOLOPARITY_DEBUG_DELAY": "2:0.4"}  # rank 2 slow: ranks 0 and 1 finish first
    proc = subprocess.Popen([sys.executable, "-m", "yoloparity", "predict", yolov5n_pt, source, "--workers", "3",
                             "--batch", "1", "--run-dir", str(run), "--timeout", "60", "--quiet",
                             "--save-jsonl", str(tmp_path / "never.jsonl")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    partial = run / "shard-002-of-003.jsonl.partial"
    try:
        wait_for(lambda: (run / "shard-000-of-003.jsonl").exists() and (run / "shard-001-of-003.jsonl").exists()
                  and _rows(partial) >= 3, 300, "shards 0 and 1 finished, rank 2 three rows in")
        victim = json.loads((run / "progress-002.json").read_text())
        assert not victim["finished"]
        os.kill(victim["pid"], signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 2
    assert "rank 2 died from signal SIGKILL" in err and f"--resume {run}" in err and "Traceback" not in err
    assert not (tmp_path / "never.jsonl").exists()  # no half-merged output
    kept = _rows(partial)
    assert 3 <= kept < 15
    with open(partial, "ab") as fh:  # what a kill in the middle of a write leaves: a torn last line
        fh.write(b'{"file":"torn')
    out = tmp_path / "resumed.jsonl"
    resumed = subprocess.run([sys.executable, "-m", "yoloparity", "predict", yolov5n_pt, source, "--workers", "3",
                              "--resume", str(run), "--save-jsonl", str(out), "--json", "--quiet"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    notes = json.loads(resumed.stdout)["notes"]
    assert "rank 0: reused shard-000-of-003.jsonl (15 inputs)" in notes
    assert "rank 1: reused shard-001-of-003.jsonl (15 inputs)" in notes
    assert f"rank 2: resumed shard-002-of-003.jsonl after {kept} of 15 inputs" in notes
    assert out.read_bytes() == expected.read_bytes()  # nothing twice, nothing missing, the same bytes


@pytest.mark.slow
def test_memory_stays_flat_from_500_to_5000_images(coco_images, yolov5n_pt, tmp_path):
    """Peak RSS of a 5,000-input run within 1.2x of a 500-input run (the 206 images listed over and over).

    ONNX Runtime at 64 px keeps inference cheap: what is measured is what grows with the input count (the source
    list, the rows, the bookkeeping), not the model."""
    predict_files(yolov5n_pt, coco_images[0], backend="onnxruntime")  # the export is cached before either run

    def peak_rss_mb(n: int) -> float:
        source = _list_file(tmp_path / f"{n}.txt", [coco_images[k % len(coco_images)] for k in range(n)])
        probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024); sys.exit(r.returncode)")
        proc = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "yoloparity", "predict", yolov5n_pt,
                               source, "--backend", "onnxruntime", "--imgsz", "64", "--batch", "32", "--quiet", "--json",
                               "--save-jsonl", str(tmp_path / f"{n}.jsonl")], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        *summary, rss = proc.stdout.strip().splitlines()
        assert json.loads("\n".join(summary))["images"] == n
        assert _rows(tmp_path / f"{n}.jsonl") == n
        return float(rss)

    small, large = peak_rss_mb(500), peak_rss_mb(5000)
    assert large <= 1.2 * small, f"peak RSS {large:.0f} MB for 5,000 inputs vs {small:.0f} MB for 500"


def test_a_batch_the_runtime_fails_on_fails_alone(yolov5n_pt, coco_images, tmp_path, monkeypatch):
    """One image the runtime cannot take is counted as failed, named, and its batch neighbours are unchanged."""
    import cv2

    from yoloparity.backends.torch_backend import TorchBackend

    odd = tmp_path / "panorama.jpg"  # the only input whose letterbox is 640 x 192
    cv2.imwrite(str(odd), cv2.resize(cv2.imread(coco_images[0]), (640, 180)))
    files = coco_images[:6] + [str(odd)] + coco_images[6:9]
    source = _list_file(tmp_path / "set.txt", files)
    clean = predict_files(yolov5n_pt, source, batch=4, save_jsonl=str(tmp_path / "clean.jsonl"))
    assert clean.failed == 0
    run_impl = TorchBackend._run_impl

    def refuses_wide(self, batch):
        if batch.shape[2] == 192:
            raise RuntimeError("simulated kernel failure on this shape")
        return run_impl(self, batch)

    monkeypatch.setattr(TorchBackend, "_run_impl", refuses_wide)
    summary = predict_files(yolov5n_pt, source, batch=4, save_jsonl=str(tmp_path / "p.jsonl"))
    assert summary.failed == 1 and summary.skipped == 0 and summary.images == 9
    assert "panorama.jpg: inference failed (RuntimeError: simulated kernel failure on this shape)" in summary.errors[0]
    rows = (tmp_path / "p.jsonl").read_text().splitlines()
    assert json.loads(rows[6]) == {"file": str(odd), "error": summary.errors[0], "stage": "inference"}
    assert rows[:6] + rows[7:] == (tmp_path / "clean.jsonl").read_text().splitlines()[:6] + \
        (tmp_path / "clean.jsonl").read_text().splitlines()[7:]


def test_resume_with_other_settings_starts_over(yolov5n_pt, coco_images, tmp_path, capsys):
    source = _list_file(tmp_path / "set.txt", coco_images[:4])
    run = tmp_path / "run"
    assert main(["predict", yolov5n_pt, source, "--run-dir", str(run), "--quiet", "--json"]) == 0
    capsys.readouterr()
    assert main(["predict", yolov5n_pt, source, "--resume", str(run), "--quiet", "--json"]) == 0
    assert "rank 0: reused shard-000-of-001.jsonl (4 inputs)" in json.loads(capsys.readouterr().out)["notes"]
    assert main(["predict", yolov5n_pt, source, "--resume", str(run), "--conf", "0.5", "--quiet", "--json"]) == 0
    assert not any("reused" in n for n in json.loads(capsys.readouterr().out)["notes"])


def test_ray_engine_without_ray_says_what_to_install(yolov5n_pt, coco_images, tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["predict", yolov5n_pt, coco_images[0], "--engine", "ray", "--quiet"]) == 2
    assert "pip install 'yoloparity[ray]'" in capsys.readouterr().err


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_torchrun_nodes_write_the_bytes_one_process_writes(yolov5n_pt, coco_images, tmp_path):
    """Two torchrun launchers (node ranks 0 and 1, one process each, as on two machines): rank 1's shard reaches
    rank 0 over gloo, not through a shared folder (each node has its own --run-dir)."""
    source = _list_file(tmp_path / "set.txt", coco_images[:20])
    expected = tmp_path / "one.jsonl"
    predict_files(yolov5n_pt, source, save_jsonl=str(expected))
    port = _free_port()
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
               "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", str(port),
               "-m", "yoloparity", "predict", yolov5n_pt, source, "--run-dir", str(tmp_path / f"node{node}"),
               "--save-jsonl", str(tmp_path / f"out{node}.jsonl"), "--json", "--quiet"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    summary = json.loads(outputs[0][0])
    assert summary["processes"] == 2 and summary["images"] == 20 and outputs[1][0].strip() == ""  # rank 0 reports
    assert (tmp_path / "out0.jsonl").read_bytes() == expected.read_bytes()
    assert not (tmp_path / "out1.jsonl").exists()
    assert [p.name for p in (tmp_path / "node1").glob("shard-*.jsonl")] == ["shard-001-of-002.jsonl"]
