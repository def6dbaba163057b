"""The network as a full-integer TFLite export needs it: boxes normalized, computed small.

Why: a full-integer model has one int8 scale per tensor. The float head computes boxes in input
pixels (0…640) and only then joins them with 0…1 scores; quantized, the pixel-sized
intermediates and the joined output lose the boxes entirely (measured: every box 0). Here each
step of the box arithmetic stays in 0…~2 — grid offsets, strides and anchors are pre-divided by the
input size — so every tensor fits one int8 scale, and the output is normalized xywh and scores,
as the YOLOv5 and Ultralytics TFLite exports write it (the LiteRT backend scales boxes back).
"""

from __future__ import annotations

import types

import torch
from torch import nn

from ..heads.raw_maps import ANCHOR_FREE, ANCHORS, MapLayout
from ..models.head_layers import DetectV5, DetectV8
from ..models.layers import Attention, AreaAttention


def _v5_constants(head: DetectV5, imgsz: int) -> None:
    """Grids and anchors for a static square input, normalized, as plain constants of the graph."""
    for i in range(head.nl):
        s = float(head.stride[i])
        n = imgsz // int(s)
        yv, xv = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
        setattr(head, f"_grid{i}", ((torch.stack((xv, yv), 2) - 0.5) * s / imgsz).view(1, 1, n, n, 2))
        setattr(head, f"_anchor{i}", (head.anchors[i].float() * s / imgsz).view(1, head.na, 1, 1, 2))
        setattr(head, f"_gain{i}", 2 * s / imgsz)


def _v5_forward(self: DetectV5, xs: list[torch.Tensor]) -> torch.Tensor:
    out = []
    for i in range(self.nl):
        x = self.m[i](xs[i])
        bs, _, ny, nx = x.shape
        y = x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).sigmoid()
        xy = y[..., 0:2] * getattr(self, f"_gain{i}") + getattr(self, f"_grid{i}")
        wh2 = y[..., 2:4] * 2
        wh = wh2 * wh2 * getattr(self, f"_anchor{i}")
        out.append(torch.cat((xy, wh, y[..., 4:]), -1).view(bs, -1, self.no))
    return torch.cat(out, 1)


def _v8_constants(head: DetectV8, imgsz: int) -> None:
    """The box decode of an anchor-free head as constants: a 4x4 map of the (left, top, right, bottom) distances,
    the per-anchor normalized stride and the per-anchor offset (normalized anchor centres).

    The decode is one 4x4 matrix product, a multiply and an add over the whole (N, 4, A) box tensor, every shape
    static: the form onnx2tf converts for YOLO26n (reg_max 1) and YOLOv10n. The split form before it failed on the
    anchor subtraction ("tf.math.subtract … x=(1,8400,2) y=(None,None,8400)": unknown dimensions reached the head
    and onnx2tf laid the two operands out differently); a 1x1-convolution form came out channels-last. The map is
    xyxy for the one-to-one head (its top-k reads corners) and xywh for the one-to-many head (NMS reads centres),
    as :class:`DetectV8` computes them."""
    points, scales = [], []
    head._cells = []  # anchors per level as plain numbers: every shape of the exported graph static
    for i in range(head.nl):
        s = float(head.stride[i])
        n = imgsz // int(s)
        sy, sx = torch.meshgrid(torch.arange(n, dtype=torch.float32) + 0.5, torch.arange(n, dtype=torch.float32) + 0.5,
                                indexing="ij")
        points.append((torch.stack((sx, sy), -1) * s / imgsz).view(-1, 2))
        scales.append(torch.full((n * n,), s / imgsz))
        head._cells.append(n * n)
    centres = torch.cat(points).transpose(0, 1)  # (2, A), normalized
    head._scale = torch.cat(scales).view(1, 1, -1)  # (1, 1, A)
    if head.head_branch == "one2one":  # x1 = cx - l, y1 = cy - t, x2 = cx + r, y2 = cy + b
        head._box_map = torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0]))
        head._offset = torch.cat((centres, centres)).unsqueeze(0)
    else:  # x = cx + (r - l) / 2, y = cy + (b - t) / 2, w = l + r, h = t + b
        head._box_map = torch.tensor([[-0.5, 0.0, 0.5, 0.0], [0.0, -0.5, 0.0, 0.5], [1.0, 0.0, 1.0, 0.0],
                                      [0.0, 1.0, 0.0, 1.0]])
        head._offset = torch.cat((centres, torch.zeros_like(centres))).unsqueeze(0)


def _v8_forward(self: DetectV8, xs: list[torch.Tensor]) -> torch.Tensor:
    box_branch, cls_branch = self.branches()
    feats = []
    for i in range(self.nl):
        x = torch.cat((box_branch[i](xs[i]), cls_branch[i](xs[i])), 1)
        feats.append(x.view(1, self.no, self._cells[i]))  # static: onnx2tf loses track of a -1 dimension's layout
    cat = torch.cat(feats, 2)
    box, cls = cat.split((self.reg_max * 4, self.nc), 1)
    ltrb = self.dfl(box)
    boxes = torch.matmul(self._box_map, ltrb) * self._scale + self._offset
    return torch.cat((boxes, cls.sigmoid()), 1)


class NormalizedBoxNet(nn.Module):
    """``net`` with its head computing normalized boxes for a square ``imgsz`` input."""

    def __init__(self, net: nn.Module, imgsz: int):
        super().__init__()
        self.net = net
        head = net.model[-1]
        if isinstance(head, DetectV5):
            _v5_constants(head, imgsz)
            head.forward = types.MethodType(_v5_forward, head)
        elif isinstance(head, DetectV8):
            _v8_constants(head, imgsz)
            head.forward = types.MethodType(_v8_forward, head)
        else:
            raise TypeError(f"no normalized-box head for {type(head).__name__}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network's raw output with its boxes divided by the input size (what LiteRT's int8 output needs)."""
        return self.net(x)


def _v5_maps(self: DetectV5, xs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return tuple(self.m[i](xs[i]) for i in range(self.nl))


def _v8_maps(self: DetectV8, xs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    box_branch, cls_branch = self.branches()
    return tuple(t for i in range(self.nl) for t in (box_branch[i](xs[i]), cls_branch[i](xs[i])))


def integer_attention(net: nn.Module) -> None:
    """Every attention block of ``net`` computing ``softmax(q^T k) @ v^T`` (laid out by a permutation of heads and
    positions) instead of ``v @ softmax(q^T k)^T``: the same values, with the softmax as the left operand of its
    matrix product. (A transpose of the product right after it is folded back into ``v @ attn^T`` by the TFLite
    converter: seen in the file.)

    Why: LiteRT's XNNPACK delegate runs an int8 BATCH_MATMUL of two activations only when its right operand has zero
    point 0 (measured: a 2x400x32 by 2x32x400 product 0.10 ms there against 2.2 ms on LiteRT's own int8 kernel). A
    softmax's int8 output has its fixed zero point -128, so as the right operand it keeps the product out of XNNPACK;
    as the left one, with the value map made symmetric (:mod:`.tflite_ranges`), both products of the block run
    there. YOLO26n's two blocks took ~5-6 ms each of its 22-24 ms full-integer forward on the built-in kernels."""
    for module in net.modules():
        if isinstance(module, (Attention, AreaAttention)):
            module.softmax_left = True


class RawMapsNet(nn.Module):
    """``net`` ending at its head's last convolutions: one output per map (per level: box distribution and class
    logits for an anchor-free head, of the branch that runs; the level's conv output for YOLOv5), so a full-integer
    conversion gives each its own int8 scale and zero point. :attr:`layout` says how the host decodes them
    (:func:`yoloparity.heads.raw_maps.decode_maps`)."""

    def __init__(self, net: nn.Module, imgsz: int):
        super().__init__()
        self.net = net
        head = net.model[-1]
        strides = tuple(int(s) for s in head.stride.tolist())
        sizes = tuple((imgsz // s, imgsz // s) for s in strides)
        if isinstance(head, DetectV5):
            anchors = tuple(tuple((float(w * s), float(h * s)) for w, h in head.anchors[i].tolist())
                            for i, s in enumerate(strides))
            self.layout = MapLayout(ANCHORS, strides, sizes, head.nc, anchors=anchors)
            head.forward = types.MethodType(_v5_maps, head)
        elif isinstance(head, DetectV8):
            self.layout = MapLayout(ANCHOR_FREE, strides, sizes, head.nc, reg_max=head.reg_max,
                                    xyxy=head.head_branch == "one2one")
            head.forward = types.MethodType(_v8_maps, head)
        else:
            raise TypeError(f"no raw-maps head for {type(head).__name__}")
        integer_attention(net)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The head's raw maps, in the layout's order."""
        return self.net(x)
