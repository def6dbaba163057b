"""Full-integer TFLite export (int8 input and output) from the same calibration images.

Converter: onnx2tf (ONNX → TensorFlow → TFLite converter with a representative dataset), run in
its own environment as a subprocess. Why onnx2tf: it is what the Ultralytics exporter uses for
TFLite, it converts our own ONNX export (so the graph is the one validated everywhere else),
and it writes a full-integer model with int8 I/O from our calibration tensors. litert-torch was
tried first: it installs without TensorFlow, but its PT2E flow keeps float I/O and failed on the
head's grid arithmetic; TensorFlow's converter alone cannot read ONNX or PyTorch.

``export --format tflite`` exports the network with :class:`NormalizedBoxNet` (one output, boxes normalized and
computed in small ranges, the layout other TFLite tools read). ``quantize --format tflite-int8`` converts
:class:`RawMapsNet` instead: the graph ends at the head's last convolutions, one output per map (box distribution and
class logits per level and branch; YOLOv5's conv output per level), so each has its own int8 scale and zero point,
and the LiteRT backend decodes them on the host in float32 (:mod:`yoloparity.heads.raw_maps`). One shared output
scale for boxes and scores cost the low-score detections: YOLO26n lost 12 points that way, every family 2.7 to 4.

Full-integer conversion has no per-node float fallback, so there is no accuracy-control loop
here: the drop is measured and reported against the budget, and the exit status says whether it
held.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import Callable

import numpy as np

from ..backends.litert_backend import MAP_ORDER_KEY, LiteRTBackend
from ..errors import ModelFileError, YoloParityError
from ..heads.raw_maps import RAW_MAPS_KEY
from ..io.atomic import copy_file
from ..models.hub import resolve_model_path
from ..types import SPEC_KEY
from .evaluation import (
    QuantReport,
    Step,
    accuracy_figures,
    children_peak_rss_mb,
    measure_latency,
    peak_rss_mb,
    score_model,
)
from .image_set import overlap_notes, read_images, write_calibration_nhwc
from .tflite_error import int8_error
from .tflite_range_choice import set_ranges

ERROR_IMAGES = 4  # held-out images the int8 file's error is located on (tflite_error: every tensor, built-in kernels)

TFLITE_PYTHON_ENV = "YOLOPARITY_TFLITE_PYTHON"


class ConverterUnavailableError(YoloParityError):
    """The TFLite converter environment is missing."""


def converter_python() -> str:
    """The interpreter that has onnx2tf: $YOLOPARITY_TFLITE_PYTHON, else .venv-tflite beside .venv, else this one."""
    candidates = [os.environ.get(TFLITE_PYTHON_ENV, "")]
    here = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))  # .venv
    candidates.append(os.path.join(os.path.dirname(here), ".venv-tflite", "bin", "python"))
    candidates.append(sys.executable)
    for python in candidates:
        if python and os.path.isfile(python):
            probe = subprocess.run([python, "-c", "import onnx2tf"], capture_output=True)
            if probe.returncode == 0:
                return python
    raise ConverterUnavailableError(
        None, "TFLite export needs onnx2tf and TensorFlow in their own environment: run `bash scripts/setup_tflite.sh` "
              f"(makes .venv-tflite) or set {TFLITE_PYTHON_ENV} to a Python that has onnx2tf")


def _check_model(model_path: str) -> str:

    path = resolve_model_path(model_path)
    if path.endswith(".onnx"):
        import onnx

        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in onnx.load(path, load_external_data=False).graph.input[0].type.tensor_type.shape.dim]
        if any(not isinstance(d, int) or d <= 0 for d in dims):
            raise ModelFileError(path, f"has a dynamic input shape {dims}: a TFLite model needs a static shape, and "
                                       "a TFLite export rebuilds the head from the .pt checkpoint; pass the .pt (with --imgsz)")
        raise ModelFileError(path, "a TFLite export reads a .pt checkpoint: the head is rebuilt to compute normalized boxes, "
                                   "which a full-integer model needs; pass the .pt (with --imgsz)")
    if not path.endswith(".pt"):
        raise ModelFileError(path, "a TFLite export reads a .pt checkpoint")
    return path


def _export_normalized_onnx(pt_path: str, imgsz: int | None, out: str, head_branch: str | None = None):
    """The normalized-box ONNX at ``imgsz`` (None: the checkpoint's own size); (spec, size used)."""
    import torch

    from ..backends.torch_backend import load_built
    from .tflite_graph import NormalizedBoxNet

    built = load_built(pt_path, head_branch=head_branch)
    imgsz = imgsz or built.spec.square_size
    net = NormalizedBoxNet(copy.deepcopy(built.net), imgsz).eval()
    with torch.no_grad():
        torch.onnx.export(net, torch.zeros(1, 3, imgsz, imgsz), out, input_names=["images"], output_names=["output0"],
                          opset_version=17, dynamo=False)
    return built.spec, imgsz


def _export_raw_maps_onnx(pt_path: str, imgsz: int | None, out: str):
    """The raw-maps ONNX at ``imgsz`` (None: the checkpoint's own size); (spec, size used, the net)."""
    import torch

    from ..backends.torch_backend import load_built
    from .tflite_graph import RawMapsNet

    built = load_built(pt_path)
    imgsz = imgsz or built.spec.square_size
    net = RawMapsNet(copy.deepcopy(built.net), imgsz).eval()
    names = [f"map{i}" for i in range(len(net.layout.channels))]
    with torch.no_grad():
        torch.onnx.export(net, torch.zeros(1, 3, imgsz, imgsz), out, input_names=["images"], output_names=names,
                          opset_version=17, dynamo=False)
    return built.spec, imgsz, net


def _map_order(tflite: str, net, probe: np.ndarray) -> list[str]:
    """The file's output names in the layout's map order, found by running it and the torch net on one image (each
    map matched to the output of its shape with the closest values, an int8 file's dequantized): onnx2tf names the
    outputs of its float and its int8 file differently, and keeps the ONNX order in neither name."""
    import torch

    with torch.no_grad():
        expected = [m.numpy()[0].transpose(1, 2, 0) for m in net(torch.from_numpy(probe))]  # NHWC, as TFLite's
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=tflite)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    x = LiteRTBackend.quantize(probe.transpose(0, 2, 3, 1), detail["dtype"], tuple(detail["quantization"]))
    interpreter.set_tensor(detail["index"], np.ascontiguousarray(x))
    interpreter.invoke()
    outputs = {o["name"]: LiteRTBackend.dequantize(interpreter.get_tensor(o["index"]), tuple(o["quantization"]))[0]
               for o in interpreter.get_output_details()}
    order: list[str] = []
    for want in expected:
        same = [name for name, got in outputs.items() if got.shape == want.shape and name not in order]
        if not same:
            raise ModelFileError(tflite, f"no output of shape {want.shape} for a raw map")
        order.append(min(same, key=lambda name: float(np.abs(outputs[name] - want).mean())))
    return order


def _embed_metadata(tflite: str, spec, imgsz: int, layout=None, order: list[str] | None = None) -> None:
    """Append the metadata as a zip member inside the file, where Ultralytics puts it (LiteRT ignores it); a
    raw-maps file also says how its maps decode and in which order its outputs come."""
    spec = spec.replace(imgsz=(imgsz, imgsz))
    meta = {SPEC_KEY: spec.to_json(), "yoloparity.boxes": "normalized" if layout is None else "pixels",
            "names": dict(enumerate(spec.names)), "stride": spec.stride, "imgsz": [imgsz, imgsz], "task": "detect",
            "batch": 1}
    if layout is not None:
        meta.update({RAW_MAPS_KEY: layout.to_json(), MAP_ORDER_KEY: order})
    with zipfile.ZipFile(tflite, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.txt", repr(meta))


def _convert(python: str, onnx_path: str, calib: int, workdir: str, log: Callable[[str], None],
             input_dtype: str = "int8") -> tuple[dict[str, str], float | None]:
    """onnx2tf on ``onnx_path``: the float32 TFLite, and with ``calib`` images (written to ``calib.npy`` in
    ``workdir`` beforehand, NHWC) the full-integer one too, its input ``input_dtype`` (int8 or uint8); and the
    converter process's peak memory in MB."""
    # onnx2tf checks its conversion on 20 sample images it would otherwise download; give it ours (no network) —
    # the calibration images, or for a float conversion mid-gray ones (they only feed its shape checks)
    import cv2

    if calib:
        images = np.load(os.path.join(workdir, "calib.npy"), mmap_mode="r")
        sample = np.stack([cv2.resize(np.asarray(images[i % len(images)]), (128, 128), interpolation=cv2.INTER_AREA)
                           for i in range(20)])
    else:
        sample = np.full((20, 128, 128, 3), 0.5, np.float32)
    np.save(os.path.join(workdir, "calibration_image_sample_data_20x128x128x3_float32.npy"), sample.astype(np.float32))
    out_dir = os.path.join(workdir, "tf")
    cmd = [python, "-m", "onnx2tf", "-i", onnx_path, "-o", out_dir]
    kinds = ("float32",)
    if calib:
        cmd += ["-oiqt", "-qt", "per-channel", "-iqd", input_dtype, "-oqd", "int8",
                "-cind", "images", "calib.npy", "[[[[0,0,0]]]]", "[[[[1,1,1]]]]"]
        kinds += ("full_integer_quant",)
        log(f"converting with onnx2tf ({calib} calibration images; a few minutes on 2 cores)")
    else:
        log("converting with onnx2tf (float32; about a minute on 2 cores)")
    # onnx2tf simplifies the graph first with the onnxsim command of its environment (found on PATH): without it
    # the shapes after YOLO26's C3k2 slices stay unknown and the conversion of its head fails
    path = os.pathsep.join([os.path.dirname(python), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env)
    stem = os.path.splitext(os.path.basename(onnx_path))[0]
    files = {kind: os.path.join(out_dir, f"{stem}_{kind}.tflite") for kind in kinds}
    if proc.returncode != 0 or not all(os.path.exists(f) for f in files.values()):
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise ModelFileError(onnx_path, f"onnx2tf failed (exit {proc.returncode}): {tail[-600:]}")
    return files, children_peak_rss_mb()


def export_tflite(model_path: str, out: str, imgsz: int | None = None, head_branch: str | None = None,
                  log: Callable[[str], None] = print) -> str:
    """A float32 TFLite file of a ``.pt`` checkpoint (``export --format tflite``), with the spec embedded.

    The same conversion ``quantize --format tflite-int8`` makes on its way, without calibration: the network with
    the normalized-box head (:mod:`.tflite_graph`; ``head_branch`` picks an end-to-end checkpoint's branch), through
    onnx2tf in its own environment. Its top-k (end-to-end heads) or NMS runs in NumPy, as on every backend."""

    pt = _check_model(model_path)
    python = converter_python()
    workdir = tempfile.mkdtemp(prefix="yoloparity-tflite-")
    try:
        onnx_path = os.path.join(workdir, "model.onnx")
        spec, imgsz = _export_normalized_onnx(pt, imgsz, onnx_path, head_branch=head_branch)
        files, _ = _convert(python, onnx_path, 0, workdir, log)
        _embed_metadata(files["float32"], spec, imgsz)
        copy_file(files["float32"], out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def run_tflite_int8(model_path: str, data: str, out: str | None, options, log: Callable[[str], None] = print,
                    progress_factory=None):
    """Quantize to a full-integer TFLite model with onnx2tf (calibrated on ``data``), keep its float32 file,
    and measure both on held-out and on all images, the drops with their intervals."""

    pt = _check_model(model_path)
    python = converter_python()
    out = out or os.path.splitext(os.path.basename(pt))[0] + "-int8.tflite"
    workdir = tempfile.mkdtemp(prefix="yoloparity-tflite-")
    try:
        onnx_path = os.path.join(workdir, "model.onnx")
        spec, imgsz, net = _export_raw_maps_onnx(pt, options.imgsz, onnx_path)
        spec = spec.replace(imgsz=(imgsz, imgsz))
        images = read_images(data, spec, options, log, progress_factory)
        notes = ["full-integer TFLite has no per-node float fallback: no accuracy-control steps; the drop is measured "
                 "and held against the budget",
                 f"the graph ends at the head's {len(net.layout.channels)} raw maps, each with its own int8 scale; "
                 "they are decoded on the host in float32"] + overlap_notes(images)
        calib_npy = os.path.join(workdir, "calib.npy")
        write_calibration_nhwc(images, calib_npy)
        files, converter_peak = _convert(python, onnx_path, len(images.calibration), workdir, log, options.tflite_input)
        probe = images.calibration[0].tensor()
        ranges = set_ranges(python, files["full_integer_quant"], calib_npy, options.method, log)
        notes += ranges.notes()
        for f in files.values():
            _embed_metadata(f, spec, imgsz, net.layout, _map_order(f, net, probe))
        log(f"measuring mAP on {len(images.measured)} images: float TFLite, then int8")
        float_scores = score_model(files["float32"], images, options.threads, backend="litert")
        int8_scores = score_model(files["full_integer_quant"], images, options.threads, backend="litert")
        figures = accuracy_figures(float_scores, int8_scores, images, options, log)
        held = images.held_out_ids()
        (f_map, f_map50), (q_map, q_map50) = float_scores.map(held), int8_scores.map(held)
        drop = f_map - q_map
        if figures["verdict"] != "within":
            notes.append(f"the budget of {options.max_drop} was not shown to hold: drop {drop:+.4f}, "
                         f"{figures['verdict_text']} (full integer, nothing can be kept float; more --calib-images, or "
                         "--format onnx-qdq with accuracy control)")
        latency, error = _speed_and_error(files, images, options)
        copy_file(files["full_integer_quant"], out)
        float_out = os.path.splitext(out)[0] + "-float32.tflite"
        copy_file(files["float32"], float_out)
        q_dets = int8_scores.detections(held)
        return QuantReport(
            model=model_path, output=out, format="tflite-int8", calib_method=ranges.method_words(),
            calib_images=len(images.calibration), val_images=len(held), overlap=images.overlap,
            float_map50_95=f_map, float_map50=f_map50, float_detections=float_scores.detections(held),
            int8_map50_95=q_map, int8_map50=q_map50, int8_detections=q_dets, drop=drop, max_drop=options.max_drop,
            within_budget=figures["verdict"] == "within", exclude_mode="none (full integer)", excluded_structural=[],
            kept_float=[], steps=[Step(0, q_map, q_map50, q_dets)], float_size_bytes=os.path.getsize(files["float32"]),
            int8_size_bytes=os.path.getsize(out), float_latency_ms=latency["float"], int8_latency_ms=latency["int8"],
            speedup=latency["float"] / latency["int8"], threads=options.threads,
            notes=notes + [f"float figures are the float32 TFLite from the same conversion (LiteRT); "
                           f"int8 I/O: {json.dumps(_io(out))}"],
            calibration_skipped=images.skipped, float_output=float_out, accuracy=figures["accuracy"],
            verdict=figures["verdict"], peak_rss_mb=peak_rss_mb(), converter_peak_rss_mb=converter_peak,
            int8_error=error,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _speed_and_error(files: dict[str, str], images, options) -> tuple[dict[str, float], dict]:
    """Both files' latency at batch 1 (ms, by "float" and "int8") and where the int8 file's error is
    (:func:`.tflite_error.int8_error` on the first held-out images)."""
    latency = measure_latency({"float": files["float32"], "int8": files["full_integer_quant"]},
                              images.held_out[0].tensor(), options.threads, options.latency_repeats, backend="litert")
    inputs = [image.tensor() for image in images.held_out[:ERROR_IMAGES]]
    return latency, int8_error(files["full_integer_quant"], files["float32"], inputs)


def _io(path: str) -> dict:

    backend = LiteRTBackend(path)
    return {"input": backend.in_dtype.name, "input_quantization": list(backend.in_quant),
            "output": backend.out_dtype.name, "output_quantization": list(backend.out_quant)}
