"""`bench`: every column present on a tiny run, the JSON schema, and unrunnable configurations listed with a reason."""

from __future__ import annotations

import json

import pytest

from yoloparity.cli import main

RESULT_KEYS = {"backend", "precision", "batch", "status", "reason", "model_file", "file_size_mb", "images_per_s",
               "ms_per_image", "stages_ms", "peak_rss_mb", "peak_gpu_mb", "map50_95", "map50", "gflops",
               "probe_gflops_per_s", "probe", "peak_share", "extra"}


@pytest.mark.slow
def test_tiny_bench_fills_every_column(yolov5n_pt, assets, tmp_path, capsys):
    out, page = tmp_path / "bench.json", tmp_path / "bench.html"
    code = main(["bench", yolov5n_pt, "--data", str(assets / "coco-val-mini" / "data.yaml"), "--backends",
                 "torch,onnxruntime,openvino,litert", "--precisions", "fp32,fp16", "--batch", "2", "--images", "2",
                 "--repeats", "1", "--warmup", "0", "--val-images", "2", "--json", str(out), "--html", str(page), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(out.read_text())
    assert report["schema"] == 1 and set(report) >= {"model", "gflops", "options", "machine", "results"}
    assert 4.3 < report["gflops"] < 4.7  # yolov5n at 640, counted from the graph (published: 4.5)
    results = {(r["backend"], r["precision"], r["batch"]): r for r in report["results"]}
    assert len(results) == 4 * 2  # nothing dropped
    for r in report["results"]:
        assert set(r) == RESULT_KEYS
        if r["status"] != "ok":
            assert r["reason"], r
            continue
        assert r["images_per_s"]["median"] > 0 and set(r["images_per_s"]) == {"median", "min", "max", "spread"}
        assert set(r["stages_ms"]) == {"decode", "letterbox", "inference", "nms"}
        assert r["stages_ms"]["inference"] > 0
        assert r["peak_rss_mb"] > 50 and r["file_size_mb"] > 1
        assert 0 <= r["map50_95"] <= 1 and r["probe_gflops_per_s"] > 0 and 0 < r["peak_share"]
    ok = {k for k, r in results.items() if r["status"] == "ok"}
    assert {("torch", "fp32", 2), ("onnxruntime", "fp32", 2), ("onnxruntime", "fp16", 2), ("openvino", "fp32", 2)} <= ok
    assert "CUDA" in results[("torch", "fp16", 2)]["reason"]
    assert ".tflite" in results[("litert", "fp32", 2)]["reason"]
    # fp32 backends agree on accuracy (same images, same model)
    maps = {results[k]["map50_95"] for k in (("torch", "fp32", 2), ("onnxruntime", "fp32", 2), ("openvino", "fp32", 2))}
    assert max(maps) - min(maps) < 1e-3
    for header in ("img/s", "decode", "infer", "nms", "RSS MB", "size MB", "mAP50-95", "% peak"):
        assert header in captured.out
    html = page.read_text()
    assert "<svg" in html and "Speed vs accuracy" in html and "skipped" in html
    # the recommendation: every configuration that ran was audited against torch fp32 and given a drop interval
    rec = report["recommended"]
    assert rec["reference"] == "torch fp32 b2" and rec["budget"] == 0.005 and rec["audit_images"] == 2
    labels = {c["label"]: c for c in rec["candidates"]}
    assert set(labels) == {f"{b} {p} b{n}" for (b, p, n) in ok}
    for c in labels.values():
        assert isinstance(c["audit"]["real"], int) and c["drop"]["images"] == 2 and c["verdict"]["status"]
        assert c["qualifies"] == (not c["why_not"])
        assert c["qualifies"] == (c["audit"]["real"] == 0 and c["verdict"]["status"] == "within")
    assert labels["onnxruntime fp32 b2"]["audit"]["real"] == 0  # the same network in float: no real difference
    qualified = [c for c in labels.values() if c["qualifies"]]
    assert rec["choice"] == max(qualified, key=lambda c: c["images_per_s"])
    assert f"recommended: {rec['choice']['label']}" in captured.out


def test_bench_on_a_tflite_runs_litert_only(assets, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", str(assets / "models" / "yolov5n-int8.tflite"), "--source", str(assets / "images"),
                 "--backends", "litert,onnxruntime", "--precisions", "int8", "--batch", "1", "--images", "1",
                 "--repeats", "1", "--warmup", "0", "--json", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    results = json.loads(out.read_text())["results"]
    litert = next(r for r in results if r["backend"] == "litert")
    assert litert["status"] == "ok" and litert["map50_95"] is None and litert["peak_share"] is None
    assert "no matrix-multiply probe" in litert["probe"] or "no GFLOPs" in litert["probe"]
    assert next(r for r in results if r["backend"] == "onnxruntime")["status"] == "skipped"


@pytest.mark.parametrize("flags,needle", [
    (["--backends", "tensorflow"], "unknown backend 'tensorflow'"),
    (["--precisions", "int4"], "unknown precision 'int4'"),
    (["--batch", "1,x"], "cannot read the list"),
])
def test_bench_bad_options(yolov5n_pt, assets, capsys, flags, needle):
    code = main(["bench", yolov5n_pt, "--source", str(assets / "images"), *flags, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err
