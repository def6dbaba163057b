"""Each runtime's own peak: GFLOP/s of an N x N matrix multiply, through that runtime, on the run's device.

One function per backend (named by its registry entry's ``peak_probe``), each timing the multiply where the model
runs: torch on its device, ONNX Runtime through the execution provider of the device (a CUDA run is divided by a
CUDA peak, never by the CPU's), OpenVINO with the precision hint asked for. int8 is probed as a QDQ MatMul
(quantize -> dequantize -> MatMul), the pattern our int8 models use, which ONNX Runtime and OpenVINO both lower to
integer kernels.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from ..process_settings import torch_threads
from .onnxruntime_backend import providers_for
from .registry import precision_info

N = 1024  # 2·N³ = 2.1 GFLOP per multiply: long enough to time, short enough to repeat
FLOP = 2 * N ** 3


def median_seconds(fn, repeats: int = 8, warmup: int = 2) -> float:
    """The median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _operand() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((N, N)).astype(np.float32)


def matmul_onnx(precision: str) -> bytes:
    """A one-MatMul ONNX model at ``precision``: a float MatMul of that dtype, or the QDQ pattern for int8."""
    from onnx import TensorProto, helper, numpy_helper

    info = precision_info(precision)
    b = np.random.default_rng(0).standard_normal((N, N)).astype(np.float32)
    if info.quantized:
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
        dtype = np.dtype(info.numpy_dtype or "float32")
        elem = helper.np_dtype_to_tensor_dtype(dtype)
        nodes = [helper.make_node("MatMul", ["a", "b"], ["y"])]
        inits = [numpy_helper.from_array(b.astype(dtype), "b")]
    graph = helper.make_graph(nodes, "probe", [helper.make_tensor_value_info("a", elem, [N, N])],
                              [helper.make_tensor_value_info("y", elem, [N, N])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _input_dtype(precision: str) -> np.dtype:
    """The dtype a probe model's input takes: the precision's own float type; float32 for int8 (QDQ) and types
    numpy has none of."""
    name = precision_info(precision).numpy_dtype
    return np.dtype(name or "float32")


def torch_peak(precision: str, threads: int, device: str) -> tuple[float, str]:
    """torch.mm on ``device`` at ``precision``'s torch dtype, ``threads`` intra-op threads."""
    import torch

    dev = torch.device(device)
    dtype = getattr(torch, precision_info(precision).torch_dtype or "float32")
    x = torch.from_numpy(_operand()).to(dev, dtype)

    def run():
        torch.mm(x, x)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    with torch_threads(threads):
        seconds = median_seconds(run)
    return FLOP / seconds / 1e9, f"torch.mm {N}x{N} {precision} on {device}, {threads} threads"


def onnxruntime_peak(precision: str, threads: int, device: str) -> tuple[float, str]:
    """The probe model on ONNX Runtime through the execution provider of ``device`` (CPU, CUDA or TensorRT)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads, opts.log_severity_level = threads, 1, 3
    providers = providers_for(device, None)
    session = ort.InferenceSession(matmul_onnx(precision), sess_options=opts, providers=providers)
    feed = {"a": _operand().astype(_input_dtype(precision))}
    provider = session.get_providers()[0]
    return FLOP / median_seconds(lambda: session.run(None, feed)) / 1e9, f"ONNX Runtime MatMul {N}x{N} {precision} ({provider})"


def openvino_peak(precision: str, threads: int, device: str) -> tuple[float, str]:
    """The probe model compiled by OpenVINO for the CPU with ``precision``'s hint (int8: the QDQ model at f32)."""
    import openvino as ov

    info = precision_info(precision)
    core = ov.Core()
    model = core.read_model(matmul_onnx(precision if info.quantized else "fp32"), b"")
    hint = info.openvino_hint or "f32"
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint})
    request = compiled.create_infer_request()
    return FLOP / median_seconds(lambda: request.infer({0: _operand()})) / 1e9, f"OpenVINO MatMul {N}x{N} {precision} (hint {hint})"
