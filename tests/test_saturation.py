"""int16 pair-sum saturation of int8 kernels on x86 CPUs without VNNI: the NumPy emulation against the real kernel.

The AVX2 kernel is run natively where this CPU has no VNNI, else on an emulated AVX2 CPU (QEMU user mode,
``-cpu Haswell``: ONNX Runtime picks its AVX2 kernels from CPUID); without either the test skips, saying so.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from yoloparity.backends.torch_backend import load_built
from yoloparity.benchmarking.emulated_cpu import emulator, run_on_avx2
from yoloparity.environment import int8_dot_product
from yoloparity.pipeline.letterbox import letterbox, to_input
from yoloparity.quantization.saturation import (
    INT16_MAX,
    pair_safe_scales,
    quantized_convs,
    saturation_error,
    saturation_note,
    worst_pair,
)

RUN_SCRIPT = """
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
np.save(sys.argv[3], s.run(None, {"x": np.load(sys.argv[2])})[0])
"""


def _first_conv_qdq(assets, path: str) -> tuple[np.ndarray, np.ndarray, float, float]:
    """A QDQ model of YOLOv5n's real first convolution (6x6, stride 2, 3 -> 16 channels), int8 per-channel
    symmetric weights as ONNX Runtime quantizes them, uint8 input (scale 1/255) and output."""
    conv = load_built(str(assets / "models" / "yolov5n.pt")).net.model[0].conv
    w = conv.weight.detach().numpy().astype(np.float32)
    w_scale = np.abs(w).reshape(16, -1).max(1) / 127
    w_q = np.clip(np.round(w / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
    padded, _ = letterbox(cv2.imread(str(assets / "images" / "bus.jpg")), 320, "square")
    x = to_input(padded)[None]
    x_u8 = np.round(x * 255)
    exact = torch.nn.functional.conv2d(torch.from_numpy(x_u8).double(), torch.from_numpy(w_q.astype(np.float64)),
                                       stride=2, padding=2)[0].reshape(16, -1).numpy()  # exact int32 sums (16, P)
    real = exact * (1 / 255) * w_scale[:, None]
    lo, hi = min(float(real.min()), 0.0), float(real.max())
    y_scale = (hi - lo) / 255
    y_zp = int(round(-lo / y_scale))
    init = [numpy_helper.from_array(np.array(1 / 255, np.float32), "xs"), numpy_helper.from_array(np.array(0, np.uint8), "xz"),
            numpy_helper.from_array(w_q, "w_q"), numpy_helper.from_array(w_scale.astype(np.float32), "ws"),
            numpy_helper.from_array(np.zeros(16, np.int8), "wz"), numpy_helper.from_array(np.array(y_scale, np.float32), "ys"),
            numpy_helper.from_array(np.array(y_zp, np.uint8), "yz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["x_u8"], name="qx"),
             helper.make_node("DequantizeLinear", ["x_u8", "xs", "xz"], ["x_dq"], name="dqx"),
             helper.make_node("DequantizeLinear", ["w_q", "ws", "wz"], ["w_dq"], name="dqw", axis=0),
             helper.make_node("Conv", ["x_dq", "w_dq"], ["y"], name="conv", kernel_shape=[6, 6], strides=[2, 2], pads=[2, 2, 2, 2]),
             helper.make_node("QuantizeLinear", ["y", "ys", "yz"], ["y_u8"], name="qy")]
    graph = helper.make_graph(nodes, "first_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y_u8", TensorProto.UINT8, None)], init)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    exact_u8 = np.clip(np.round(real / y_scale) + y_zp, 0, 255)
    return x, exact_u8, y_scale, y_zp


def _avx2_output(model: str, x: np.ndarray, tmp_path) -> np.ndarray:
    np.save(tmp_path / "x.npy", x)
    script, out = tmp_path / "run.py", tmp_path / "y.npy"
    script.write_text(RUN_SCRIPT)
    if int8_dot_product() == "int16-pairs":  # this CPU is the one we want
        import subprocess

        subprocess.run([sys.executable, str(script), model, str(tmp_path / "x.npy"), str(out)], check=True)
    elif emulator():
        done = run_on_avx2([str(script), model, str(tmp_path / "x.npy"), str(out)], timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    else:
        pytest.skip(f"CPU has {int8_dot_product()} int8 kernels and no qemu-x86_64 to emulate AVX2 (apt-get install qemu-user)")
    return np.load(out)


def test_emulated_pair_sums_predict_the_avx2_kernel(assets, tmp_path):
    """Where the emulation says an output loses >= 2 quantization steps, ONNX Runtime's AVX2 kernel is off the exact
    value; where it finds no saturation, the kernel is within rounding (1 step) of exact."""
    path = str(tmp_path / "conv.onnx")
    x, exact_u8, y_scale, _ = _first_conv_qdq(assets, path)
    [conv] = quantized_convs(onnx.load(path))
    assert worst_pair(conv.weight) * 255 > INT16_MAX  # real YOLOv5n weights can saturate
    x_u8 = np.round(x[0] * 255).astype(np.uint8)
    error = saturation_error(conv, x_u8)  # (16, P) int accumulator error
    lost_steps = np.abs(error) * conv.x_scale * conv.w_scale[:, None] / y_scale
    avx2 = _avx2_output(path, x, tmp_path)[0].reshape(16, -1).astype(np.int32)
    off = np.abs(avx2 - exact_u8.astype(np.int32))
    assert (lost_steps >= 2).sum() > 1000  # bright bus windows: thousands of outputs saturate
    assert (off[lost_steps >= 2] >= 1).mean() > 0.99
    assert off[error == 0].max() <= 1
    if int8_dot_product() == "vnni":  # and this CPU's own kernel has no pair saturation at all
        import onnxruntime as ort

        native = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        assert np.abs(native[0].reshape(16, -1).astype(np.int32) - exact_u8).max() <= 1
    print(f"ran on: {int8_dot_product()}; saturated outputs {int((error != 0).sum())} of {error.size}, "
          f"kernel off by >= 1 step at {int((off >= 1).sum())}")


def test_pair_safe_scales_cannot_saturate_and_cost_little(assets):
    """Pair-safe scales bound every same-sign K-pair by 128 (255 x 128 fits int16) on YOLOv5n's real weights,
    growing the scale by far less than 7-bit weights (x2) would."""
    net = load_built(str(assets / "models" / "yolov5n.pt")).net
    growths = []
    for conv in [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][:12]:
        w = conv.weight.detach().numpy().astype(np.float64)
        plain = np.abs(w).reshape(w.shape[0], -1).max(1) / 127
        scales = pair_safe_scales(w)
        q = np.clip(np.round(w / scales[:, None, None, None]), -127, 127).astype(np.int8)
        q_plain = np.clip(np.round(w / plain[:, None, None, None]), -127, 127).astype(np.int8)
        assert worst_pair(q) <= 128 < worst_pair(q_plain)
        assert np.all(scales >= plain * (1 - 1e-12))
        growths.append(float((scales / plain).mean()))
    assert 1.0 < np.mean(growths) < 1.5


def test_runtime_note_only_where_the_model_can_saturate_on_this_cpu(assets, tmp_path):
    path = str(tmp_path / "conv.onnx")
    _first_conv_qdq(assets, path)
    note = saturation_note(path, dot_product="int16-pairs")
    assert note and "1 of 1 int8 convolutions can saturate" in note and "no VNNI" in note
    assert saturation_note(path, dot_product="vnni") is None and saturation_note(path, dot_product="arm") is None
    model = onnx.load(path)  # the same layer with pair-safe weights: nothing to say
    w_init = next(i for i in model.graph.initializer if i.name == "w_q")
    s_init = next(i for i in model.graph.initializer if i.name == "ws")
    w = numpy_helper.to_array(w_init).astype(np.float64) * numpy_helper.to_array(s_init)[:, None, None, None]
    scales = pair_safe_scales(w)
    w_init.CopyFrom(numpy_helper.from_array(np.clip(np.round(w / scales[:, None, None, None]), -127, 127).astype(np.int8), "w_q"))
    s_init.CopyFrom(numpy_helper.from_array(scales.astype(np.float32), "ws"))
    onnx.save(model, path)
    assert saturation_note(path, dot_product="int16-pairs") is None
