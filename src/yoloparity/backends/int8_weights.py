"""What an int8 ONNX file's weights allow on a CPU without VNNI, read from the file alone.

Every backend that runs an int8 file on the CPU carries a note when its u8 x s8 convolutions can saturate the
int16 pair sums of a CPU without VNNI (:func:`runtime_notes`). That needs only the weights, so it lives here,
below the backends; the emulation on real activations and the pair-safe scales that remove the problem are
:mod:`yoloparity.quantization.saturation`'s (its docstring explains the kernels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import environment

INT16_MAX = 32767
U8_MAX = 255


@dataclass
class QuantConv:
    """One quantized Conv of a QDQ model, with what the emulation needs."""

    node: str
    weight_name: str  # the float weight's name in the model before quantization (the TensorQuantOverrides key)
    x_u8: str  # the uint8 tensor the convolution reads
    x_zero_point: int
    x_scale: float
    weight: np.ndarray  # int8 (Cout, Cin/groups, kh, kw)
    w_scale: np.ndarray  # (Cout,) float
    y_scale: float  # the output's quantization step (0 if the output is not re-quantized)
    group: int
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]
    dilations: tuple[int, int]


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return tuple(a.ints) if a.ints else a.i
    return default


def quantized_convs(model) -> list[QuantConv]:
    """Every Conv of a QDQ model whose input and weight are both dequantized int8/uint8 tensors."""
    from onnx import numpy_helper

    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {i.name: i for i in model.graph.initializer}

    def const(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    convs = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        x_dq, w_dq = producer.get(node.input[0]), producer.get(node.input[1])
        if not (x_dq and w_dq and x_dq.op_type == w_dq.op_type == "DequantizeLinear"):
            continue
        w = const(w_dq.input[0])
        if w is None or w.dtype != np.int8 or x_dq.input[0] in inits:
            continue
        x_zp = const(x_dq.input[2]) if len(x_dq.input) > 2 else np.uint8(0)
        if x_zp is None or x_zp.dtype != np.uint8:
            continue
        after = [c for c in consumers.get(node.output[0], []) if c.op_type == "QuantizeLinear"]
        y_scale = float(const(after[0].input[1])) if after else 0.0
        w_name = w_dq.input[0]
        convs.append(QuantConv(
            node=node.name,
            weight_name=w_name[: -len("_quantized")] if w_name.endswith("_quantized") else w_name,
            x_u8=x_dq.input[0], x_zero_point=int(x_zp), x_scale=float(const(x_dq.input[1])),
            weight=w, w_scale=np.broadcast_to(const(w_dq.input[1]).astype(np.float64), (w.shape[0],)).copy(),
            y_scale=y_scale, group=int(_attr(node, "group", 1)), strides=tuple(_attr(node, "strides", (1, 1))),
            pads=tuple(_attr(node, "pads", (0, 0, 0, 0))), dilations=tuple(_attr(node, "dilations", (1, 1))),
        ))
    return convs


def k_ordered_weights(weight: np.ndarray) -> np.ndarray:
    """(Cout, K) int32 weights in the kernels' K order: kernel row, kernel column, input channel."""
    cout = weight.shape[0]
    return weight.transpose(0, 2, 3, 1).reshape(cout, -1).astype(np.int32)


def k_pairs(rows: np.ndarray) -> np.ndarray:
    """(N, K) -> (N, ceil(K/2), 2): the K-pairs (2j, 2j+1) the kernels add in int16; an odd K pairs with 0."""
    if rows.shape[1] % 2:
        rows = np.pad(rows, ((0, 0), (0, 1)))
    return rows.reshape(rows.shape[0], -1, 2)


def same_sign_pair_sums(pairs: np.ndarray) -> np.ndarray:
    """(.., J, 2) -> (.., J): the larger of a pair's positive and negative magnitude sums, the most it can add
    with u8 activations (opposite signs partly cancel)."""
    return np.maximum(np.clip(pairs, 0, None).sum(-1), np.clip(-pairs, 0, None).sum(-1))


def can_saturate(worst: int) -> bool:
    """Whether a layer whose worst same-sign pair sum is ``worst`` can pass int16 with u8 activations."""
    return worst * U8_MAX > INT16_MAX


def worst_pair(weight: np.ndarray) -> int:
    """The largest same-sign |w0| + |w1| over the K-pairs (2j, 2j+1) of every output channel."""
    return int(same_sign_pair_sums(k_pairs(k_ordered_weights(weight))).max(initial=0))


def saturation_note(path: str, dot_product: str | None = None) -> str | None:
    """A one-line note when an int8 (u8 x s8) ONNX model that can saturate runs on a CPU whose int8 kernels
    sum int16 pairs; None on VNNI/ARM CPUs, for float models, and for models whose weights cannot saturate
    (every same-sign K-pair within 128, as ``quantize`` writes them)."""
    if (dot_product or environment.int8_dot_product()) != "int16-pairs" or not path.endswith(".onnx"):
        return None
    import onnx

    convs = quantized_convs(onnx.load(path, load_external_data=False))
    risky = sum(can_saturate(worst_pair(c.weight)) for c in convs)
    if not risky:
        return None
    return (f"{path}: {risky} of {len(convs)} int8 convolutions can saturate their int16 pair sums on this CPU (no VNNI), "
            "so detections can differ from a VNNI CPU's; `yoloparity quantize` writes pair-safe weights that cannot")


def runtime_notes(path: str, device: str) -> list[str]:
    """The notes a backend running ``path`` on ``device`` carries: the saturation note on CPUs without VNNI."""
    note = saturation_note(path) if device.split(":")[0] == "cpu" else None
    return [note] if note else []
