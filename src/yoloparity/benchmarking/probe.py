"""The machine's own limit: peak GFLOP/s of a matrix multiply on each backend and precision.

A model's share of the peak (model GFLOPs x images/s / probe GFLOP/s) says how much headroom a
configuration leaves; the probe runs in the same run, through the same runtime, at the same
thread count, so the ratio is not skewed by a datasheet figure or by another day's machine.
int8 is probed as a QDQ MatMul (quantize -> dequantize -> MatMul), the pattern our int8 models
use, which ONNX Runtime and OpenVINO both lower to integer kernels.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from ..backends.registry import backend_info, device_kind, device_names
from ..process_settings import torch_threads

N = 1024  # 2·N³ = 2.1 GFLOP per multiply: long enough to time, short enough to repeat


def _median_seconds(fn, repeats: int = 8, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _matmul_onnx(precision: str) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    b = rng.standard_normal((N, N)).astype(np.float32)
    if precision == "int8":
        nodes = [
            helper.make_node("QuantizeLinear", ["a", "sa", "za"], ["qa"]),
            helper.make_node("DequantizeLinear", ["qa", "sa", "za"], ["da"]),
            helper.make_node("DequantizeLinear", ["qb", "sb", "zb"], ["db"]),
            helper.make_node("MatMul", ["da", "db"], ["y"]),
        ]
        inits = [numpy_helper.from_array(np.array(0.02, np.float32), "sa"),
                 numpy_helper.from_array(np.array(128, np.uint8), "za"),
                 numpy_helper.from_array(np.clip(np.round(b / 0.02), -127, 127).astype(np.int8), "qb"),
                 numpy_helper.from_array(np.array(0.02, np.float32), "sb"),
                 numpy_helper.from_array(np.array(0, np.int8), "zb")]
        elem = TensorProto.FLOAT
    else:
        dtype = np.float16 if precision == "fp16" else np.float32
        elem = TensorProto.FLOAT16 if precision == "fp16" else TensorProto.FLOAT
        nodes = [helper.make_node("MatMul", ["a", "b"], ["y"])]
        inits = [numpy_helper.from_array(b.astype(dtype), "b")]
    graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("a", elem, [N, N])],
                              [helper.make_tensor_value_info("y", elem, [N, N])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def probe_gflops(backend: str, precision: str, threads: int, device: str = "cpu") -> tuple[float | None, str]:
    """(peak GFLOP/s, how it was measured) — or (None, why there is no probe)."""
    flop = 2 * N ** 3
    a32 = np.random.default_rng(1).standard_normal((N, N)).astype(np.float32)
    info = backend_info(backend)
    if precision not in info.precisions and not info.runs_file_precision:
        return None, f"{backend} has no {precision} path here"
    if precision in info.precisions and device_kind(device) not in info.precisions[precision]:
        return None, f"{precision} on {backend} needs {device_names(info.precisions[precision])}"
    if backend == "torch":
        import torch

        dev = torch.device(device)
        dtype = torch.float16 if precision == "fp16" else torch.float32
        x = torch.from_numpy(a32).to(dev, dtype)
        def run():
            torch.mm(x, x)
            if dev.type == "cuda":
                torch.cuda.synchronize()
        with torch_threads(threads):
            seconds = _median_seconds(run)
        return flop / seconds / 1e9, f"torch.mm {N}x{N} {precision}, {threads} threads"
    if backend == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3
        session = ort.InferenceSession(_matmul_onnx(precision), sess_options=opts, providers=["CPUExecutionProvider"])
        feed = {"a": a32.astype(np.float16) if precision == "fp16" else a32}
        return flop / _median_seconds(lambda: session.run(None, feed)) / 1e9, f"ONNX Runtime MatMul {N}x{N} {precision}"
    if backend == "openvino":
        import openvino as ov

        core = ov.Core()
        model = core.read_model(_matmul_onnx(precision if precision != "fp16" else "fp32"), b"")
        hint = {"fp16": "f16", "fp32": "f32", "int8": "f32"}[precision]
        compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint})
        request = compiled.create_infer_request()
        return flop / _median_seconds(lambda: request.infer({0: a32})) / 1e9, f"OpenVINO MatMul {N}x{N} {precision}"
    return None, f"no matrix-multiply probe for {backend} (no way to build a {backend} model here)"
