"""Trained checkpoints as users have them (``*-from-int8.pt``: YOLOv8n, YOLO26n, YOLOv10n with COCO weights).

The reader takes what training leaves in a checkpoint and still runs nothing; detections equal the reference's
(``golden/trained``) within float32 noise measured against the float64 truth; val gives the reference validator's
figure for the same head (Ultralytics 8.4.190, pycocotools, batch 1) at any batch size and number of processes.
"""

from __future__ import annotations

import json
import os
import pickle
import pickletools
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest import require_tflite_converter

import yoloparity
from yoloparity.models.checkpoint import read_checkpoint
from yoloparity.pipeline.postprocess import postprocess
from yoloparity.types import Letterbox, Thresholds

TRAINED = ("yolov8n", "yolo26n", "yolov10n")
END_TO_END = ("yolo26n", "yolov10n")
# the reference validator (bench/reference_ultralytics.py: Ultralytics 8.4.190, CPU fp32, batch 1, rect 640) on the
# 206 images of coco-val-mini, its predictions scored with pycocotools: (mAP50-95, mAP50) per (checkpoint, head)
REFERENCE_MAP = {
    ("yolov8n", None): (0.401761, 0.553500),
    ("yolo26n", "one2one"): (0.425750, 0.589668),  # nms=False: the end-to-end top-k
    ("yolo26n", "one2many"): (0.420333, 0.595539),  # 8.4.190's default: one-to-many head + NMS
    ("yolov10n", "one2one"): (0.385674, 0.545070),
    ("yolov10n", "one2many"): (0.389305, 0.555943),
}
MAP_TOLERANCE = 1e-4  # "to 4 decimals": COCO figures move in steps far above float noise, or not at all
# the reference's own float32 distance to the float64 truth on these images (golden/trained/README.md: box
# 1.3e-3 to 4.8e-3 px), and the golden files' score tolerance (golden/README.md)
REFERENCE_BOX_NOISE, REFERENCE_SCORE_NOISE = 5e-3, 1e-4
INPUT_PIXELS = Letterbox((640, 640), (640, 640), 1.0, (0.0, 0.0), (0, 0, 0, 0))  # boxes stay in input pixels


def _pt(assets, arch: str) -> str:
    return str(assets / "models" / f"{arch}-from-int8.pt")


# --- the reader ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", TRAINED)
def test_trained_checkpoints_load_with_their_metadata(assets, arch):
    """Each file holds Detect.shape (a torch.Size, as Ultralytics' trainer leaves it) and its writer's metadata."""
    import torch

    ckpt = read_checkpoint(_pt(assets, arch))
    detect = ckpt.model._modules["model"]._modules[str(len(ckpt.model._modules["model"]._modules) - 1)]
    assert isinstance(detect.shape, torch.Size) and len(detect.shape) == 4
    spec = yoloparity.load_model(_pt(assets, arch)).spec
    prov = spec.provenance
    assert prov["version"] == "8.4.190" and prov["date"].startswith("2026-") and prov["train_args"]["task"] == "detect"
    assert len(prov["reconstructed_from"]["sha256"]) == 64 and "/" in prov["reconstructed_from"]["repo"]
    assert "mapping" not in prov["reconstructed_from"]  # long entries stay in the checkpoint
    json.dumps(prov)  # travels into ONNX metadata and run records as plain JSON


def _renumbered(fragment: bytes, base: int) -> bytes:
    """A pickle fragment's opcodes with its memo slots moved to ``base`` and up, so that it can be spliced into
    another pickle without overwriting that pickle's memo."""
    out = bytearray()
    ops = list(pickletools.genops(fragment))
    for (op, arg, pos), nxt in zip(ops, ops[1:] + [(None, None, len(fragment))]):
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            out += b"r" + struct.pack("<I", base + int(arg))
        elif op.name in ("GET", "BINGET", "LONG_BINGET"):
            out += b"j" + struct.pack("<I", base + int(arg))
        elif op.name not in ("PROTO", "STOP"):
            out += fragment[pos:nxt[2]]
    return bytes(out)


def _splice(src: str, dst, replacements: dict[str, object]) -> str:
    """Copy checkpoint ``src`` to ``dst`` with the values that follow some pickled strings replaced: ``{"shape": v}``
    replaces the value after the first ``'shape'`` key (an attribute or dict key), as pickle wrote it."""
    with zipfile.ZipFile(src) as zin:
        names = zin.namelist()
        pkl = next(n for n in names if n.endswith("data.pkl"))
        data = zin.read(pkl)
        ops = list(pickletools.genops(data))
        patches = []
        for key, value in replacements.items():
            k = next(i for i, (op, arg, _) in enumerate(ops) if op.name.endswith("UNICODE") and arg == key)
            j = k + 1
            while ops[j][0].name.endswith("PUT"):  # the key's own memo entry
                j += 1
            start = ops[j][2]
            if ops[j][0].name == "NONE":
                end = start + 1
            else:  # a torch.Size: GLOBAL, its tuple of ints, TUPLE1, REDUCE (and a memo put)
                r = next(i for i in range(j, len(ops)) if ops[i][0].name == "REDUCE")
                r += 1 + int(ops[r + 1][0].name.endswith("PUT"))
                end = ops[r][2]
            fragment = pickletools.optimize(pickle.dumps(value, protocol=2))
            patches.append((start, end, _renumbered(fragment, 1_000_000 + 10_000 * len(patches))))
        for start, end, new in sorted(patches, reverse=True):
            data = data[:start] + new + data[end:]
        with zipfile.ZipFile(dst, "w") as zout:
            for name in names:
                zout.writestr(name, data if name == pkl else zin.read(name))
    return str(dst)


def test_what_training_leaves_in_a_checkpoint_is_read_and_runs_nothing(assets, tmp_path):
    """A checkpoint saved after a forward pass at another input size (Detect.shape from a batch of 2 at 416x544)
    and the values users' checkpoints carry beside the model (numpy-scalar best_fitness, numpy arrays, devices,
    paths, sets, complex): all read, the model detects as before."""
    import collections
    import pathlib

    import torch

    extras = {"array": np.arange(6, dtype=np.float32).reshape(2, 3), "int": np.int64(7), "device": torch.device("cpu"),
              "path": pathlib.PurePosixPath("/runs/train/weights"), "set": {1, 2}, "frozen": frozenset({"a"}),
              "complex": complex(1, 2), "slice": slice(1, 5, 2), "counts": collections.Counter(a=2),
              "ordered": collections.OrderedDict(x=1), "bytes": bytearray(b"ab"), "size": torch.Size([3, 4])}
    path = _splice(_pt(assets, "yolov8n"), tmp_path / "trained.pt",
                   {"shape": torch.Size([2, 64, 52, 68]), "best_fitness": np.float64(0.6125), "updates": extras})
    ckpt = read_checkpoint(path)
    detect = ckpt.model._modules["model"]._modules["22"]
    assert detect.shape == torch.Size([2, 64, 52, 68])
    assert isinstance(ckpt.meta["best_fitness"], np.float64) and ckpt.meta["best_fitness"] == 0.6125
    got = ckpt.meta["updates"]
    assert np.array_equal(got["array"], extras["array"]) and got["array"].dtype == np.float32
    assert {k: v for k, v in got.items() if k != "array"} == {k: v for k, v in extras.items() if k != "array"}
    original = yoloparity.load_model(_pt(assets, "yolov8n")).predict(str(assets / "images" / "bus.jpg"))[0]
    spliced = yoloparity.load_model(path).predict(str(assets / "images" / "bus.jpg"))[0]
    assert np.array_equal(original.detections.boxes, spliced.detections.boxes)


@pytest.mark.unit
@pytest.mark.parametrize("payload", ["subclass", "codec"])
def test_numpy_and_codec_reconstructors_refuse_what_could_run_code(tmp_path, payload):
    """numpy's array reconstructor makes plain arrays only (a subclass runs its own code); ``_codecs.encode``
    only turns latin-1 text into bytes."""
    from yoloparity.errors import CheckpointError

    if payload == "subclass":
        body = b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nmatrix\nK\x00\x85C\x01btR"
    else:
        body = b"c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R"
    data = b"\x80\x02}X\x05\x00\x00\x00modelN" + b"X\x01\x00\x00\x00x" + body + b"u."
    data = data.replace(b"}X", b"}(X", 1)
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", data)
    with pytest.raises(CheckpointError, match="evil.pt") as err:
        read_checkpoint(path)
    assert ("subclass" in str(err.value)) if payload == "subclass" else ("rot13" in str(err.value))


# --- detections against the reference ----------------------------------------------------------------------------

def _heads(arch: str) -> list[tuple[str | None, str]]:
    """(head, golden key): the one-to-one head (top-k) and 8.4.190's default one-to-many + NMS for end-to-end."""
    return [("one2one", "dets"), ("one2many", "dets_o2m_nms")] if arch in END_TO_END else [(None, "dets")]


def _detections(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows x1, y1, x2, y2, score, class in input pixels (the reference predictor's settings), and the raw output."""
    raw = model.raw(x)[0]
    d = postprocess(raw, model.spec.head_format, INPUT_PIXELS, Thresholds(conf=0.25, iou=0.7, max_det=300))
    rows = np.column_stack([d.boxes, d.scores, d.class_ids]).astype(np.float64)
    return rows[np.lexsort((rows[:, 0], rows[:, 5]))], raw


def _distance(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Largest box and score difference of two detection sets ordered alike; they must hold the same classes."""
    assert len(a) == len(b) and np.array_equal(a[:, 5], b[:, 5]), (a, b)
    return float(np.abs(a[:, :4] - b[:, :4]).max(initial=0.0)), float(np.abs(a[:, 4] - b[:, 4]).max(initial=0.0))


@pytest.mark.parametrize("arch", TRAINED)
def test_detections_equal_the_reference_within_float_noise(assets, arch):
    """Our float64 network is the reference's function: its detections are the reference's float32 ones within
    the reference's own float32 noise. Ours in float32 are the reference's within both runs' distance to the
    float64 truth — ours measured here, on this CPU, from the raw outputs."""
    for name in ("bus", "zidane"):
        golden = np.load(assets / "golden" / "trained" / f"{arch}-from-int8_{name}.npz")
        x = np.load(assets / "golden" / f"{arch}_{name}.npz")["input"]  # bitwise our square letterbox
        for head, key in _heads(arch):
            ref = golden[key].astype(np.float64)
            ref = ref[np.lexsort((ref[:, 0], ref[:, 5]))]
            truth, raw64 = _detections(yoloparity.load_model(_pt(assets, arch), head_branch=head, precision="fp64"), x)
            ours, raw32 = _detections(yoloparity.load_model(_pt(assets, arch), head_branch=head), x)
            box, score = _distance(ref, truth)
            assert box <= REFERENCE_BOX_NOISE and score <= REFERENCE_SCORE_NOISE, (arch, name, head, box, score)
            ours_box = float(np.abs(raw32[:4] - raw64[:4]).max())
            ours_score = float(np.abs(raw32[4:] - raw64[4:]).max())
            box, score = _distance(ref, ours)
            assert box <= REFERENCE_BOX_NOISE + ours_box and score <= REFERENCE_SCORE_NOISE + ours_score, (arch, name, head)
            assert len(ref) >= 2 and 0 in ref[:, 5]  # people on both photos, whichever head


def test_yolo26n_predicts_a_bus_and_four_people(assets, capsys):
    from yoloparity.cli import main

    code = main(["predict", _pt(assets, "yolo26n"), str(assets / "images" / "bus.jpg"), "--json", "--quiet"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["per_class"] == {"person": 4, "bus": 1}
    assert out["reference"]["head_branch"] == "one2one" and "nms=False" in out["reference"]["command"]


# --- val against the reference validator --------------------------------------------------------------------------

def _val(assets, arch: str, head: str | None, batch: int, evaluator: str = "pycocotools", **kwargs):
    """val on ONNX Runtime; the reference's figures are pycocotools', the predictions do not depend on the evaluator."""
    return yoloparity.val(_pt(assets, arch), str(assets / "coco-val-mini" / "data.yaml"), backend="onnxruntime",
                          batch=batch, evaluator=evaluator, head_branch=head, **kwargs)


def _assert_reference_figure(report, arch: str, head: str | None) -> None:
    ref50_95, ref50 = REFERENCE_MAP[(arch, head)]
    m = report.metrics
    assert abs(m.mAP50_95 - ref50_95) <= MAP_TOLERANCE and abs(m.mAP50 - ref50) <= MAP_TOLERANCE, (
        arch, head, m.mAP50_95, m.mAP50)


@pytest.mark.slow
@pytest.mark.parametrize("arch", TRAINED)
def test_val_gives_the_reference_figure_at_batch_1_and_32(assets, arch, tmp_path):
    """Each image's input shape and result are its own (ONNX Runtime on the CPU runs batch-invariant kernels): the
    reference's batch-1 figure at batch 32 on all 206 images, and bitwise the same predictions at batch 1 (on the
    first 48 images: what is compared is per image, so every image need not be run twice)."""
    from conftest import subset_dataset

    head = "one2one" if arch in END_TO_END else None
    full = _val(assets, arch, head, 32)
    _assert_reference_figure(full, arch, head)
    assert full.reference["head_branch"] == head
    if head:
        assert "nms=False" in full.reference["command"] and "batch=1" in full.reference["command"]
    subset = subset_dataset(assets, tmp_path / "subset", 48)
    expected = _by_file(full)
    for batch in (1,):
        got = _by_file(yoloparity.val(_pt(assets, arch), subset, backend="onnxruntime", batch=batch, head_branch=head))
        assert len(got) == 48 and got == {name: expected[name] for name in got}, batch


def _by_file(report) -> dict:
    """Each image's predictions by file name (the same image has other ids in a subset's data.yaml)."""
    return {os.path.basename(r.file): (r.boxes, r.scores, r.class_ids) for r in report.records}


@pytest.mark.slow
@pytest.mark.parametrize("arch", END_TO_END)
def test_one2many_val_gives_the_reference_default_figure(assets, arch):
    """--head one2many is what Ultralytics 8.4.190 runs by default: the same figure, and the command says so."""
    report = _val(assets, arch, "one2many", 16)
    _assert_reference_figure(report, arch, "one2many")
    assert "nms=False" not in report.reference["command"] and "one2many" in report.reference["head_summary"]


@pytest.mark.slow
def test_val_over_two_processes_gives_the_same_figure(assets, tmp_path):
    """YOLO26n, its default head, sharded over two processes (torch.distributed, gloo): the same predictions."""
    metrics = tmp_path / "m.json"
    proc = subprocess.run([sys.executable, "-m", "yoloparity", "val", _pt(assets, "yolo26n"),
                           str(assets / "coco-val-mini" / "data.yaml"), "--backend", "onnxruntime", "--workers", "2",
                           "--batch", "16", "--evaluator", "pycocotools", "--json", str(metrics), "--quiet",
                           "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    m = json.loads(metrics.read_text())
    ref50_95, ref50 = REFERENCE_MAP[("yolo26n", "one2one")]
    assert m["settings"]["processes"] == 2 and m["settings"]["head_branch"] == "one2one"
    assert abs(m["mAP50_95"] - ref50_95) <= MAP_TOLERANCE and abs(m["mAP50"] - ref50) <= MAP_TOLERANCE
    assert "the same figure from the reference: yolo val" in proc.stdout and "nms=False" in proc.stdout


# --- LiteRT: end-to-end heads through the TFLite converter ---------------------------------------------------------

TFLITE_SIZE = 320  # the conversion's cost grows with the input; 320 keeps it to about a minute per file


@pytest.fixture(scope="module")
def yolo26n_quantized(assets, tmp_path_factory):
    """``quantize --format tflite-int8`` of YOLO26n: its exit code, printed report, JSON report and the two files."""
    require_tflite_converter()
    from yoloparity.cli import main

    folder = tmp_path_factory.mktemp("y26-tflite")
    out, report = folder / "y26-int8.tflite", folder / "r.json"
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["quantize", _pt(assets, "yolo26n"), "--data", str(assets / "coco-val-mini" / "data.yaml"),
                     "--format", "tflite-int8", "--imgsz", str(TFLITE_SIZE), "--calib-images", "16",
                     "--val-images", "40", "--max-drop", "0.05", "--out", str(out), "--json", str(report), "--quiet"])
    return code, printed.getvalue(), json.loads(report.read_text()), out


@pytest.mark.slow
def test_yolo26n_quantizes_to_full_integer_tflite(yolo26n_quantized, assets):
    """The end-to-end head converts and its int8 file is validated on LiteRT: boxes and classes survive full-integer
    quantization (Ultralytics' own int8 TFLite export of end-to-end heads scores 0, ultralytics #17327). Exit 3 only
    says the drop is outside the budget. The file is full-integer (int8 in, one int8 output per raw head map, each
    with its own scale), carries its spec and map layout, and finds the bus and the people on bus.jpg."""
    code, printed, r, out = yolo26n_quantized
    assert code == (0 if r["within_budget"] else 3), printed
    assert r["format"] == "tflite-int8" and r["val_images"] == 40 and r["calib_images"] == 16 and out.exists()
    # the converter's min/max ranges narrowed to percentiles of the calibration images (and said so)
    assert r["calib_method"].startswith("percentile 99.999") and any("narrowed to the 99.999" in n for n in r["notes"])
    assert r["float_map50_95"] > 0.25 and r["int8_map50_95"] > 0.5 * r["float_map50_95"]
    assert "mAP50-95" in printed and f"{r['int8_map50_95']:.4f}" in printed
    assert r["float_output"].endswith("-float32.tflite") and "the float32 file of the same conversion" in printed
    assert r["int8_size_bytes"] < 0.4 * r["float_size_bytes"]
    held = r["accuracy"][0]["interval"]
    assert held["low"] <= held["drop"] <= held["high"]  # the drop comes with its paired bootstrap interval
    # attention's products in the form XNNPACK runs in int8: each softmax the left operand, each right operand zero
    # point 0 (else LiteRT's own int8 kernel runs them, ~20x slower), and the report says so
    products = _matrix_products(out)
    assert len(products) == 4 and all(right_zero_point == 0 for _, right_zero_point in products)
    assert [left for left, _ in products].count("SOFTMAX") == 2
    assert any("attention's keys and values" in n and "2 shared range(s)) given zero point 0" in n for n in r["notes"])
    _assert_int8_error_located(r, printed, out)
    model = yoloparity.load_model(str(out))
    b = model.backend
    assert model.spec.head_format == "e2e" and model.spec.head_branch == "one2one"
    assert b.in_dtype.name == "int8" and b.out_dtype.name == "int8" and b.metadata_source == "embedded"
    # the graph ends at the one-to-one head's raw maps (box distances and class logits per level), each its own scale
    assert len(b.outputs) == 6 and len({q for q in b.out_quants}) == 6 and b.layout.xyxy
    assert "6 int8 raw maps out" in b.io_description
    assert model.spec.names[0] == "person" and model.spec.imgsz == (TFLITE_SIZE, TFLITE_SIZE)
    bus = model.predict([str(assets / "images" / "bus.jpg")], conf=0.3)[0]
    assert 5 in bus.detections.class_ids.tolist() and bus.detections.class_ids.tolist().count(0) >= 2


def _assert_int8_error_located(r: dict, printed: str, out) -> None:
    """The report says where the int8 error is: each raw map's SQNR against the float32 file (finite: int8 differs;
    the float file against itself: no error at all), the score maps' score error, and layers of the file itself."""
    from ai_edge_litert.interpreter import Interpreter

    from yoloparity.quantization.tflite_error import tensor_sqnr

    error = r["int8_error"]
    assert error["images"] == 4 and error["tensors_compared"] > 100 and len(error["maps"]) == 6
    assert all(0 < m["sqnr_db"] < 80 for m in error["maps"])
    scores = [m for m in error["maps"] if "score_rms_error" in m]
    assert len(scores) == 3 and all(0 < m["score_rms_error"] < 0.5 and m["scored_cells"] > 0 for m in scores)
    names = {t["name"] for t in Interpreter(model_path=str(out)).get_tensor_details()}
    assert error["worst_layers"] and all(w["output"] in names and w["loss_db"] > 0 for w in error["worst_layers"])
    assert "int8 against the float32 file, by raw map" in printed
    x = np.random.default_rng(0).random((1, 3, TFLITE_SIZE, TFLITE_SIZE), dtype=np.float32)
    same, _ = tensor_sqnr(r["float_output"], r["float_output"], [x])
    assert same and not {k: v for k, v in same.items() if v != float("inf")}


def _matrix_products(tflite) -> list[tuple[str, int]]:
    """Each BATCH_MATMUL of a TFLite file: the op that makes its left operand and its right operand's zero point."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite))
    ops = interpreter._get_ops_details()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    maker = {int(o): op["op_name"] for op in ops for o in op["outputs"]}
    return [(maker.get(int(op["inputs"][0]), "input"), int(tensors[int(op["inputs"][1])]["quantization"][1]))
            for op in ops if op["op_name"] == "BATCH_MATMUL"]


def _float_tflite(arch: str, assets, tmp_path, yolo26n_quantized) -> str:
    if arch == "yolo26n":
        return yolo26n_quantized[2]["float_output"]
    from yoloparity.quantization.tflite_export import export_tflite

    return export_tflite(_pt(assets, arch), str(tmp_path / f"{arch}.tflite"), imgsz=TFLITE_SIZE, log=lambda _: None)


@pytest.mark.slow
@pytest.mark.parametrize("arch", TRAINED)
def test_every_backend_gives_torch_s_detections(arch, assets, tmp_path, request):
    """torch, ONNX Runtime, OpenVINO and LiteRT (the float32 TFLite; YOLO26n's from the quantize run above) on the
    two photos: no real difference, whichever head format (v8 with NMS, end-to-end with the top-k)."""
    require_tflite_converter()
    quantized = request.getfixturevalue("yolo26n_quantized") if arch == "yolo26n" else None
    tflite = _float_tflite(arch, assets, tmp_path, quantized)
    assert yoloparity.load_model(tflite).spec.head_format == ("e2e" if arch in END_TO_END else "v8")
    common = f"mode=square,imgsz={TFLITE_SIZE}"
    report = yoloparity.audit(_pt(assets, arch), [str(assets / "images" / "bus.jpg"), str(assets / "images" / "zidane.jpg")],
                              [f"backend=torch,{common}", f"backend=onnxruntime,{common}",
                               f"backend=openvino,{common}", f"backend=litert,model={tflite},{common}"]).report.to_dict()
    assert report["verdict"] == "pass", report
    assert [c["real"] for c in report["configs"]] == [0, 0, 0]
    assert all(c["images_compared"] == 2 for c in report["configs"])


@pytest.mark.unit
def test_reference_command_spells_out_the_head_and_every_changed_setting():
    """The printed reference command reproduces the run: the head (nms=False for the top-k), batch 1 for val (the
    reference's figure moves with its batch size), and every threshold that is not the reference's default."""
    from yoloparity.models.reference_commands import reference_command, reference_note
    from yoloparity.types import ModelSpec

    e2e = ModelSpec(names=("person",), head_format="e2e", family="ultralytics", head_branch="one2one")
    o2m = e2e.replace(head_format="v8", head_branch="one2many")
    v5 = ModelSpec(names=("person",), head_format="v5", family="yolov5")
    val = {"imgsz": 640, "mode": "rect", "conf": 0.001, "iou": 0.7, "max_det": 300}
    assert reference_command(e2e, "val", "m.pt", "d.yaml", val) == (
        "yolo val model=m.pt data=d.yaml imgsz=640 batch=1 nms=False  (Ultralytics 8.4.190)")
    assert reference_command(o2m, "val", "m.pt", "d.yaml", {**val, "iou": 0.5, "conf": 0.01}).startswith(
        "yolo val model=m.pt data=d.yaml imgsz=640 batch=1 conf=0.01 iou=0.5  (")
    assert reference_command(e2e, "val", "m.pt", "d.yaml", {**val, "mode": "square"}) is None  # always rect there
    predict = {"imgsz": [640], "mode": "square", "conf": 0.25, "iou": None, "max_det": 300, "classes": (0, 2)}
    assert reference_command(o2m, "predict", "m.pt", "my photos", predict) == (
        "yolo predict model=m.pt source='my photos' imgsz=640 classes=0,2 rect=False  (Ultralytics 8.4.190)")
    assert reference_command(v5, "val", "y.pt", "d.yaml", {**val, "iou": 0.6}) == (
        "python val.py --weights y.pt --data d.yaml --img 640 --batch-size 1  (YOLOv5 7.0.14)")
    assert "--max-det 300" in reference_command(v5, "predict", "y.pt", "a.jpg", {**predict, "mode": "rect"})
    assert reference_note(e2e, "val", "m.pt", "d.yaml", val)["head_branch"] == "one2one"


@pytest.mark.parametrize("arch", ["yolov5n", "yolov8n", "yolo26n-one2many", "yolo26n", "yolov10n",
                                  "user/v5n-ds3-best", "user/v8n-ds3-best", "user/yolo26n-ds3-best"])
def test_raw_maps_decoded_on_the_host_give_the_head_s_own_output(arch, assets):
    """A full-integer file ends at the head's raw maps (each its own int8 scale) and the host decodes them: DFL, the
    sigmoid, anchor centres or YOLOv5's grid and anchors, strides, corners for the one-to-one head. On trained weights
    the decode equals the network's own head output (float32 rounding only), for every family and branch, and for the
    users' fine-tunes (3 classes on heads that kept the pretrained width)."""
    import copy

    import torch

    from yoloparity.backends.torch_backend import load_built
    from yoloparity.heads.raw_maps import MapLayout, decode_maps
    from yoloparity.quantization.tflite_graph import RawMapsNet

    name, _, branch = arch.partition("-")
    if arch.startswith("user/"):
        name, branch = arch, ""
    path = (str(assets / "user" / "models" / f"{arch[5:]}.pt") if arch.startswith("user/")
            else str(assets / "models" / "yolov5n.pt") if name == "yolov5n" else _pt(assets, name))
    built = load_built(path, head_branch=branch or None)
    import cv2

    size = 320
    image = cv2.resize(cv2.imread(str(assets / "images" / "bus.jpg")), (size, size))[:, :, ::-1]
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))[None].astype(np.float32) / 255)
    with torch.no_grad():
        expected = built.net(x).numpy()
        net = RawMapsNet(copy.deepcopy(built.net), size).eval()
        maps = [m.numpy() for m in net(x)]
    layout = MapLayout.from_json(net.layout.to_json())  # as a file carries it
    decoded = decode_maps(maps, layout)
    assert decoded.shape == expected.shape == layout.head_shape()
    np.testing.assert_allclose(decoded, expected, rtol=1e-5, atol=2e-3)
