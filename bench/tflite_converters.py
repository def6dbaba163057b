"""The full-integer converter, measured: onnx2tf (ours) against litert-torch and ai-edge-quantizer on one network.

Runs in `bench/.venv-litert-torch` (`bash bench/setup_litert_torch.sh`), with the project's `src` on the path for
the network only (`RawMapsNet` with its integer attention, our own checkpoint reader). From one checkpoint at 640 it
makes, with the first ``--calib-images`` coco-val-mini images (letterboxed, RGB, 0..1):

* litert-torch's PT2E static int8 (torchao ``prepare_pt2e``/``convert_pt2e``, per-channel symmetric weights);
* litert-torch's float32 file, then ai-edge-quantizer's ``static_wi8_ai8`` recipe on it (min/max ranges);

then times them on LiteRT (XNNPACK, ``--threads``, batch 1, interleaved, median of ``--repeats``) beside the files
given with ``--ours`` (our ``quantize --format tflite-int8`` output and its float32 file), and prints a markdown table:
how many op outputs compute in float32, int8 I/O, ms. BENCHMARKS.md, "The converter: onnx2tf against litert-torch".

    bench/.venv-litert-torch/bin/python bench/tflite_converters.py MODEL.pt --ours INT8.tflite FLOAT.tflite
"""

from __future__ import annotations

import argparse
import collections
import copy
import glob
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
from benchmarks_md import assets_dir  # noqa: E402


def letterboxed(path: str, size: int) -> np.ndarray:
    """(1, 3, size, size) float32 RGB 0..1: the image letterboxed into the square as our quantize reads it."""
    from yoloparity.data.sources import read_image
    from yoloparity.pipeline.letterbox import letterbox, to_input

    return to_input(letterbox(read_image(path), size, "square")[0])[None]


def network(pt: str, size: int):
    """Our raw-maps network of ``pt`` at ``size``, in eval mode."""
    from yoloparity.backends.torch_backend import load_built
    from yoloparity.quantization.tflite_graph import RawMapsNet

    return RawMapsNet(copy.deepcopy(load_built(pt).net), size).eval()


def pt2e_int8(net, sample, images: list[np.ndarray], out: str) -> str:
    """litert-torch's PT2E static int8 file of ``net``, calibrated on ``images``."""
    import litert_torch
    import torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    module = torch.export.export(net, (sample,)).module()
    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
    module = quantize_pt2e.prepare_pt2e(module, quantizer)
    with torch.no_grad():
        for image in images:
            module(torch.from_numpy(image))
    module = quantize_pt2e.convert_pt2e(module, fold_quantize=False)
    litert_torch.convert(module, (sample,), quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(out)
    return out


def aeq_int8(net, sample, images: list[np.ndarray], float_out: str, out: str) -> str:
    """litert-torch's float32 file of ``net`` (kept at ``float_out``), quantized by ai-edge-quantizer's static
    int8 recipe calibrated on ``images``."""
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    litert_torch.convert(net, (sample,)).export(float_out)
    signatures = Interpreter(model_path=float_out).get_signature_list()
    name = next(iter(signatures))
    input_name = signatures[name]["inputs"][0]
    q = quantizer.Quantizer(float_out)
    q.load_quantization_recipe(recipe.static_wi8_ai8())
    calibration = q.calibrate({name: [{input_name: image} for image in images]}, num_threads=2)
    q.quantize(calibration).export_model(out, overwrite=True)
    return out


def describe(path: str) -> tuple[int, int, bool]:
    """(op outputs in float32, op outputs in all, int8 input and outputs) of a TFLite file."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    kinds = collections.Counter(tensors[o]["dtype"].__name__ for op in interpreter._get_ops_details()
                                for o in op["outputs"] if o in tensors)
    io = interpreter.get_input_details() + interpreter.get_output_details()
    return kinds["float32"], sum(kinds.values()), all(d["dtype"] == np.int8 for d in io)


def latencies(paths: list[str], threads: int, repeats: int) -> dict[str, float]:
    """Median invoke ms of each file, interleaved (the order reversed every other round)."""
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(0)
    interpreters = {}
    for path in paths:
        interpreter = Interpreter(model_path=path, num_threads=threads)
        interpreter.allocate_tensors()
        detail = interpreter.get_input_details()[0]
        x = (rng.integers(-128, 127, size=detail["shape"]) if detail["dtype"] != np.float32
             else rng.random(detail["shape"])).astype(detail["dtype"])
        interpreter.set_tensor(detail["index"], x)
        for _ in range(3):
            interpreter.invoke()
        interpreters[path] = interpreter
    times: dict[str, list[float]] = {path: [] for path in paths}
    for r in range(repeats):
        for path in (paths if r % 2 == 0 else paths[::-1]):
            start = time.perf_counter()
            interpreters[path].invoke()
            times[path].append((time.perf_counter() - start) * 1000)
    return {path: float(np.median(v)) for path, v in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--ours", nargs=2, metavar=("INT8", "FLOAT"), required=True)
    parser.add_argument("--calib-images", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    size = 640
    data = assets_dir(ROOT) / "coco-val-mini" / "images"
    images = [letterboxed(p, size) for p in sorted(glob.glob(str(data / "*.jpg")))[:args.calib_images]]
    net, sample = network(args.model, size), np.zeros((1, 3, size, size), np.float32)
    with tempfile.TemporaryDirectory(prefix="yoloparity-converters-") as work:
        return _convert_and_time(args, net, sample, images, work)


def _convert_and_time(args, net, sample, images, work: str) -> int:
    """Their two files made in ``work``, then every file timed and described (the table of the module docstring)."""
    import torch

    made = {}
    start = time.time()
    made["litert-torch PT2E static int8"] = pt2e_int8(net, torch.from_numpy(sample), images,
                                                      os.path.join(work, "pt2e-int8.tflite"))
    float_file = os.path.join(work, "litert-torch-float32.tflite")
    made["litert-torch float32 + ai-edge-quantizer static_wi8_ai8"] = aeq_int8(
        net, torch.from_numpy(sample), images, float_file, os.path.join(work, "aeq-int8.tflite"))
    made["litert-torch float32"] = float_file
    print(f"converted in {time.time() - start:.0f} s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB",
          file=sys.stderr)
    files = {"ours: onnx2tf full-integer": args.ours[0], "ours: its float32 TFLite": args.ours[1], **made}
    ms = latencies(list(files.values()), args.threads, args.repeats)
    print("| file | int8 I/O | float32 op outputs | ms |\n| --- | --- | ---: | ---: |")
    for label, path in files.items():
        floats, total, int8_io = describe(path)
        print(f"| {label} | {'yes' if int8_io else 'no'} | {floats} of {total} | {ms[path]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
