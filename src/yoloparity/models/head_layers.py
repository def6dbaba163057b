"""Detection heads. They end where the references' eval-mode heads end: the raw head tensor.

* :class:`DetectV5` — anchors + objectness; output (N, A, 5 + nc): xywh in input pixels,
  objectness, class scores, all after sigmoid. A is ordered level, anchor, row, column.
* :class:`DetectV8` — anchor-free, DFL integral in the graph; output (N, 4 + nc, A): xywh in
  input pixels, then sigmoid class scores. A is ordered level, row, column.

Decoding into boxes and NMS happen once, in NumPy (:mod:`yoloparity.pipeline`), for every backend.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import DFL, Conv, DWConv


class DetectV5(nn.Module):
    """YOLOv5's anchor-based detection head: (N, A, 5 + nc) rows of xywh, objectness and class scores."""
    def __init__(self, nc: int, anchors: list[list[float]], ch: list[int], strides: list[float]):
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        # anchors in units of the level's stride, exactly as the checkpoints store them
        self.register_buffer("anchors", torch.zeros(self.nl, self.na, 2))
        self.register_buffer("stride", torch.tensor(strides, dtype=torch.float32), persistent=False)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """Decode each level's grid with its anchors into the concatenated raw rows."""
        out = []
        for i in range(self.nl):
            x = self.m[i](xs[i])
            bs, _, ny, nx = x.shape
            y = x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).sigmoid()
            stride = self.stride[i]
            yv, xv = torch.meshgrid(
                torch.arange(ny, device=x.device, dtype=x.dtype), torch.arange(nx, device=x.device, dtype=x.dtype), indexing="ij"
            )
            grid = torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2) - 0.5
            anchor_grid = (self.anchors[i] * stride).view(1, self.na, 1, 1, 2).to(x.dtype)
            xy = (y[..., 0:2] * 2 + grid) * stride
            wh = (y[..., 2:4] * 2) ** 2 * anchor_grid
            out.append(torch.cat((xy, wh, y[..., 4:]), -1).view(bs, -1, self.no))
        return torch.cat(out, 1)


class DetectV8(nn.Module):
    """The anchor-free head of YOLOv8/11/12, and with ``end2end`` the NMS-free heads of YOLOv10 and YOLO26.

    Output (N, 4 + nc, A): boxes in input pixels, then sigmoid class scores. An end-to-end head carries two
    branch sets: the one-to-many ``cv2``/``cv3`` (trained with NMS) and the one-to-one ``one2one_cv2``/
    ``one2one_cv3`` whose boxes the reference ranks with a top-k instead of NMS. ``head_branch`` picks which one runs
    ("one2one" by default for end-to-end checkpoints); one-to-one boxes come out as xyxy (the top-k input, as the
    reference decodes them), one-to-many boxes as xywh (for NMS, as v8's)."""

    def __init__(self, nc: int, ch: list[int], strides: list[float], reg_max: int = 16, dw_cls: bool = False,
                 end2end: bool = False, c2: int | None = None, c3: int | None = None):
        super().__init__()
        self.end2end = end2end
        self.head_branch = "one2one" if end2end else "one2many"
        self.nc = nc
        self.nl = len(ch)
        self.reg_max = reg_max
        self.no = nc + reg_max * 4
        # the branch widths the architecture derives from nc, unless the checkpoint's tensors say otherwise (a
        # fine-tune keeps the pretrained file's class-branch width: 80 wide beside a 3-class last conv)
        c2 = c2 or max(16, ch[0] // 4, reg_max * 4)
        c3 = c3 or max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1)) for x in ch)
        if dw_cls:  # YOLO11: depth-wise separable class branch
            self.cv3 = nn.ModuleList(
                nn.Sequential(
                    nn.Sequential(DWConv(x, x, 3), Conv(x, c3, 1)),
                    nn.Sequential(DWConv(c3, c3, 3), Conv(c3, c3, 1)),
                    nn.Conv2d(c3, nc, 1),
                )
                for x in ch
            )
        else:
            self.cv3 = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for x in ch)
        if end2end:  # the same structure again, its own weights
            import copy

            self.one2one_cv2 = copy.deepcopy(self.cv2)
            self.one2one_cv3 = copy.deepcopy(self.cv3)
        self.dfl = DFL(reg_max) if reg_max > 1 else nn.Identity()
        self.register_buffer("stride", torch.tensor(strides, dtype=torch.float32), persistent=False)

    def branches(self) -> tuple[nn.ModuleList, nn.ModuleList]:
        """The (box, class) convolutions of the branch that runs (:attr:`head_branch`)."""
        return (self.one2one_cv2, self.one2one_cv3) if self.head_branch == "one2one" else (self.cv2, self.cv3)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """The anchor-free head: DFL boxes and sigmoid class scores, (N, 4 + nc, A); xyxy for one2one."""
        bs = xs[0].shape[0]
        one2one = self.head_branch == "one2one"
        box_branch, cls_branch = self.branches()
        feats, points, strides = [], [], []
        for i in range(self.nl):
            x = torch.cat((box_branch[i](xs[i]), cls_branch[i](xs[i])), 1)
            _, _, h, w = x.shape
            feats.append(x.view(bs, self.no, -1))
            sy, sx = torch.meshgrid(
                torch.arange(h, device=x.device, dtype=x.dtype) + 0.5,
                torch.arange(w, device=x.device, dtype=x.dtype) + 0.5,
                indexing="ij",
            )
            points.append(torch.stack((sx, sy), -1).view(-1, 2))
            strides.append(torch.full((h * w, 1), float(self.stride[i]), device=x.device, dtype=x.dtype))
        cat = torch.cat(feats, 2)
        anchor_points = torch.cat(points).transpose(0, 1).unsqueeze(0)  # (1, 2, A)
        stride_t = torch.cat(strides).transpose(0, 1)  # (1, A)
        box, cls = cat.split((self.reg_max * 4, self.nc), 1)
        lt, rb = self.dfl(box).chunk(2, 1)
        x1y1 = anchor_points - lt
        x2y2 = anchor_points + rb
        if one2one:
            return torch.cat((torch.cat((x1y1, x2y2), 1) * stride_t, cls.sigmoid()), 1)
        xywh = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * stride_t
        return torch.cat((xywh, cls.sigmoid()), 1)
