"""Which int8 convolutions saturate on x86 CPUs without VNNI, found from the weights and real activations.

On x86 without VNNI (AVX2, AVX-512 before Cascade Lake) ONNX Runtime's u8 x s8 kernels use
``vpmaddubsw``: it multiplies each u8 activation by its s8 weight and adds *pairs* of neighbouring
products (along the reduction axis K) into an int16, saturating at ±32767, before the int32
accumulation. With VNNI (``vpdpbusd``) the four products go straight into int32. A pair of
same-sign weights whose magnitudes add past 128, met by two activations near 255, saturates: the
same int8 file then computes another function on one CPU than on the other (measured here, yolov5n:
0.006 mAP50-95 lost on VNNI, 0.046 on AVX2).

Two findings per quantized convolution:

* ``static``: the worst pair sum the weights allow with u8 activations in 0..255, in the kernels' K
  order (the filter reordered to kernel-row, kernel-column, input-channel, as ONNX Runtime's
  QLinearConv packs it). Over 32767 means the layer *can* saturate on some input.
* ``observed``: the int16 pair sums emulated in NumPy on the u8 activations of real calibration
  images (the QDQ model run with its quantized tensors exposed): how many outputs saturate and the
  largest error that causes, in units of the output's own quantization step.

A layer whose observed error reaches half an output step rounds differently on a CPU without VNNI
(:func:`layers_rounding_differently`). ``quantize`` then gives every quantized convolution *pair-safe scales*
(:func:`pair_safe_scales`): per output channel, the smallest scale under which no same-sign K-pair of
int8 weights adds past 128, so 255 x 128 = 32640 fits int16 on any input. The model then computes the
same integers on every x86 CPU, at a small cost in weight resolution (YOLOv5n: scales x1.19 on average;
7-bit weights everywhere, ONNX Runtime's ``reduce_range``, would be x2 and lost 0.016 mAP50-95).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..backends.int8_weights import (  # noqa: F401  (the static analysis, re-exported beside the emulation)
    INT16_MAX,
    U8_MAX,
    QuantConv,
    can_saturate,
    k_ordered_weights,
    k_pairs,
    quantized_convs,
    runtime_notes,
    same_sign_pair_sums,
    saturation_note,
    worst_pair,
)


@dataclass
class LayerSaturation:
    """One quantized convolution's saturation findings: static worst pair, observed saturated outputs and
    error, and the effect of pair-safe scales."""
    node: str
    weight: str
    k: int  # reduction length per output (Cin/groups x kh x kw)
    worst_pair: int  # the largest same-sign |w0| + |w1| of a K-pair, over output channels
    can_saturate: bool  # static: 255 x worst_pair > 32767 (see :func:`can_saturate`)
    outputs: int = 0  # outputs emulated
    saturated_outputs: int = 0  # outputs with at least one saturated pair
    max_error_steps: float = 0.0  # the largest |error| an output took, in output quantization steps
    scale_growth: float | None = None  # with pair-safe scales: mean new/old scale over the output channels
    worst_pair_after: int | None = None  # with pair-safe scales (<= 128: cannot saturate)

    def to_dict(self) -> dict:
        """The findings as JSON values."""
        return asdict(self)


def pair_safe_scales(weight: np.ndarray) -> np.ndarray:
    """Per-output-channel int8 scales under which no K-pair of same-sign weights adds past 128.

    Starting from the usual symmetric scale (max |w| / 127), a channel's scale grows (by 1/256 at a time)
    only until its rounded weights satisfy |q0| + |q1| <= 128 for every same-sign pair in the kernels' K
    order: then 255 x 128 = 32640 fits int16 and the channel cannot saturate on any input. Most channels
    keep their scale or grow a little (YOLOv5n: x1.19 on average, where 7-bit weights would be x2).
    """
    pairs = k_pairs(weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1).astype(np.float64))
    scales = np.maximum(np.abs(pairs).max(axis=(1, 2)), 1e-12) / 127
    for o in range(pairs.shape[0]):
        for _ in range(512):
            q = np.clip(np.round(pairs[o] / scales[o]), -127, 127)
            if same_sign_pair_sums(q).max() <= 128:
                break
            scales[o] *= 1 + 1 / 256
    return scales


def _im2col_u8(x: np.ndarray, conv: QuantConv, group: int) -> np.ndarray:
    """(positions, K) uint8 columns of one image's group, K in kernel-row, kernel-column, channel order;
    padding takes the input's zero point, as the quantized kernels pad."""
    c = x.shape[0] // conv.group
    xg = x[group * c : (group + 1) * c]
    top, left, bottom, right = conv.pads
    xp = np.pad(xg, ((0, 0), (top, bottom), (left, right)), constant_values=conv.x_zero_point)
    kh, kw = conv.weight.shape[2:]
    (sh, sw), (dh, dw) = conv.strides, conv.dilations
    oh = (xp.shape[1] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[2] - dw * (kw - 1) - 1) // sw + 1
    cols = np.empty((oh * ow, kh, kw, c), np.uint8)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
            cols[:, i, j, :] = patch.reshape(c, -1).T
    return cols.reshape(oh * ow, -1)


def saturation_error(conv: QuantConv, x_u8: np.ndarray) -> np.ndarray:
    """(Cout, positions) int64: what the int16 pair sums of a CPU without VNNI lose, per output, against
    the exact int32 accumulation, for one image's u8 input (C, H, W).

    Only pairs that can reach the int16 limit are evaluated: a pair saturates only if its larger
    activation times the pair's largest same-sign weight sum passes 32767, so the rest is skipped.
    """
    cout = conv.weight.shape[0]
    per_group = cout // conv.group
    w_all = k_ordered_weights(conv.weight)
    errors = []
    for g in range(conv.group):
        w = w_all[g * per_group : (g + 1) * per_group]
        a = k_pairs(_im2col_u8(x_u8, conv, g).astype(np.int32))  # (P, J, 2)
        wp = k_pairs(w)  # (O, J, 2)
        pair_max = same_sign_pair_sums(wp).max(0)  # (J,)
        p_idx, j_idx = np.nonzero(a.max(-1) * pair_max[None, :] > INT16_MAX)  # only these pairs can saturate
        error = np.zeros((a.shape[0], w.shape[0]), np.int64)
        for start in range(0, len(p_idx), 1 << 16):
            pi, ji = p_idx[start : start + (1 << 16)], j_idx[start : start + (1 << 16)]
            sums = np.einsum("nk,onk->no", a[pi, ji], wp[:, ji].astype(np.int32))  # exact pair sums (n, O)
            np.add.at(error, pi, np.clip(sums, -INT16_MAX - 1, INT16_MAX) - sums)
        errors.append(error.T)
    return np.concatenate(errors, axis=0)


def emulate_saturation(conv: QuantConv, x_u8: np.ndarray) -> tuple[int, int, float]:
    """(outputs, outputs that saturate, max |error| in output quantization steps) for one image's u8 input."""
    error = saturation_error(conv, x_u8)
    hit = error != 0
    if not hit.any():
        return error.size, 0, 0.0
    step = conv.y_scale if conv.y_scale > 0 else 1.0
    real_error = np.abs(error) * conv.x_scale * conv.w_scale[:, None]
    return error.size, int(hit.sum()), float(real_error.max()) / step


def analyze(qdq_path: str, images: list[np.ndarray], threads: int = 2) -> list[LayerSaturation]:
    """Static and observed saturation of every quantized Conv of ``qdq_path`` on ``images`` (N, 3, H, W)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(qdq_path)
    convs = quantized_convs(model)
    wanted = sorted({c.x_u8 for c in convs})
    existing = {o.name for o in model.graph.output}
    for name in wanted:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    layers = []
    for conv in convs:
        bound = worst_pair(conv.weight)
        layers.append(LayerSaturation(conv.node, conv.weight_name, int(np.prod(conv.weight.shape[1:])), bound,
                                      can_saturate(bound)))
    for image in images:
        values = dict(zip(wanted, session.run(wanted, {input_name: image[None].astype(np.float32)})))
        for conv, layer in zip(convs, layers):
            if not layer.can_saturate:
                continue
            n, sat, err = emulate_saturation(conv, values[conv.x_u8][0])
            layer.outputs += n
            layer.saturated_outputs += sat
            layer.max_error_steps = max(layer.max_error_steps, err)
    return layers


def layers_rounding_differently(layers: list[LayerSaturation], threshold_steps: float = 0.5) -> list[LayerSaturation]:
    """The layers whose observed saturation error can change an output's rounding (>= ``threshold_steps``)."""
    return [layer for layer in layers if layer.max_error_steps >= threshold_steps]
