"""The building blocks of YOLOv5, YOLOv8 and YOLO11, written for inference.

Parameter names match the official checkpoints (``conv``, ``bn``, ``cv1`` …), so a checkpoint's
tensors load by name; numerics that differ between families (BatchNorm eps, which convolutions
have an activation) are set from the checkpoint itself by :mod:`.build`, not assumed here.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def same_pad(k: int, p: int | None = None, d: int = 1) -> int:
    """Padding that keeps the spatial size at stride 1 ('same'), unless given explicitly."""
    if p is not None:
        return p
    k = d * (k - 1) + 1 if d > 1 else k
    return k // 2


class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + activation; after :meth:`fuse`, one biased Conv2d."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, d: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, same_pad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act: nn.Module = nn.SiLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolution, BatchNorm (folded away after fusing), activation."""
        if self.bn is None:
            return self.act(self.conv(x))
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold BatchNorm into the convolution, as the references do before inference."""
        if self.bn is None:
            return
        conv, bn = self.conv, self.bn
        fused = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=True,
        ).to(conv.weight.device)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_(bn.bias + (conv_bias - bn.running_mean) * scale)
        self.conv = fused
        self.bn = None


class DWConv(Conv):
    """Depth-wise convolution: groups = gcd(c1, c2)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, d: int = 1, act: bool = True):
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), d=d, act=act)


class Concat(nn.Module):
    """Concatenation of several layers' outputs along a dimension (the yaml's Concat)."""
    def __init__(self, dimension: int = 1):
        super().__init__()
        self.d = dimension

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """The inputs concatenated along ``dim``."""
        return torch.cat(xs, self.d)


class Bottleneck(nn.Module):
    """Two convolutions with an optional residual; ``k`` gives both kernel sizes."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, k: tuple[int, int] = (1, 3), e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, k[0], 1)
        self.cv2 = Conv(c_, c2, k[1], 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Two convolutions, with the input added back when shapes allow."""
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP block with three convolutions (YOLOv5's C3; Ultralytics' C3 uses 1x1-3x3 bottlenecks too)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5, k: tuple[int, int] = (1, 3)):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, k=k, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """YOLOv5's CSP block: bottlenecks on one branch, concatenated with the other."""
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C3k(C3):
    """C3 with k x k bottlenecks (YOLO11's inner block of C3k2)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5, k: int = 3):
        super().__init__(c1, c2, n, shortcut, g, e, k=(k, k))


class C2f(nn.Module):
    """CSP bottleneck with two convolutions whose every bottleneck output is concatenated (YOLOv8)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, self.c, shortcut, g, k=(3, 3), e=1.0) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The split-and-concatenate CSP block of YOLOv8 (and C3k2 of YOLO11/26)."""
        y = list(self.cv1(x).chunk(2, 1))
        for block in self.m:
            y.append(block(y[-1]))
        return self.cv2(torch.cat(y, 1))


class C3k2(C2f):
    """C2f whose inner blocks are C3k (``c3k=True``) or 3x3-3x3 bottlenecks with e=0.5 (YOLO11); with ``attn``
    (YOLO26) each block is a bottleneck followed by a PSA block. Argument order as the yaml rows give them."""

    def __init__(self, c1: int, c2: int, n: int = 1, c3k: bool = False, e: float = 0.5, attn: bool = False, g: int = 1,
                 shortcut: bool = True):
        super().__init__(c1, c2, n, shortcut, g, e)

        def block() -> nn.Module:
            if attn:
                return nn.Sequential(Bottleneck(self.c, self.c, shortcut, g, k=(3, 3), e=0.5),
                                     PSABlock(self.c, attn_ratio=0.5, num_heads=max(self.c // 64, 1)))
            if c3k:
                return C3k(self.c, self.c, 2, shortcut, g)
            return Bottleneck(self.c, self.c, shortcut, g, k=(3, 3), e=0.5)

        self.m = nn.ModuleList(block() for _ in range(n))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: one max-pool applied ``n`` times in a row."""

    def __init__(self, c1: int, c2: int, k: int = 5, n: int = 3, shortcut: bool = False):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * (n + 1), c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)
        self.n = n
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial pyramid pooling: three chained max-pools concatenated."""
        y = [self.cv1(x)]
        for _ in range(self.n):
            y.append(self.m(y[-1]))
        out = self.cv2(torch.cat(y, 1))
        return out + x if self.add else out


class Attention(nn.Module):
    """Multi-head self-attention over the spatial positions, with a depth-wise positional conv."""

    def __init__(self, dim: int, num_heads: int = 8, attn_ratio: float = 0.5):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.key_dim = int(self.head_dim * attn_ratio)
        self.scale = self.key_dim**-0.5
        qkv_channels = dim + self.key_dim * num_heads * 2
        self.qkv = Conv(dim, qkv_channels, 1, act=False)
        self.proj = Conv(dim, dim, 1, act=False)
        self.pe = Conv(dim, dim, 3, 1, g=dim, act=False)
        self.softmax_left = False  # the same values as attn @ v^T (quantization.tflite_graph.integer_attention)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention over positions with a depthwise positional encoding."""
        b, c, h, w = x.shape
        n = h * w
        qkv = self.qkv(x)
        q, k, v = qkv.view(b, self.num_heads, self.key_dim * 2 + self.head_dim, n).split(
            [self.key_dim, self.key_dim, self.head_dim], dim=2
        )
        attn = ((q.transpose(-2, -1) @ k) * self.scale).softmax(dim=-1)
        if self.softmax_left:  # laid out by a permutation of heads and positions, not a transpose of the product
            out = (attn @ v.transpose(-2, -1)).permute(0, 2, 1, 3).reshape(b, h, w, c).permute(0, 3, 1, 2)
        else:
            out = (v @ attn.transpose(-2, -1)).view(b, c, h, w)
        return self.proj(out + self.pe(v.reshape(b, c, h, w)))


class PSABlock(nn.Module):
    """Attention followed by a two-layer feed-forward, each with a residual."""

    def __init__(self, c: int, attn_ratio: float = 0.5, num_heads: int = 4, shortcut: bool = True):
        super().__init__()
        self.attn = Attention(c, num_heads=num_heads, attn_ratio=attn_ratio)
        self.ffn = nn.Sequential(Conv(c, c * 2, 1), Conv(c * 2, c, 1, act=False))
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attention then feed-forward, each with a residual."""
        x = x + self.attn(x) if self.add else self.attn(x)
        return x + self.ffn(x) if self.add else self.ffn(x)


class C2PSA(nn.Module):
    """Split the channels; one half goes through PSA blocks; concatenate (YOLO11)."""

    def __init__(self, c1: int, c2: int, n: int = 1, e: float = 0.5):
        super().__init__()
        if c1 != c2:
            raise ValueError(f"C2PSA needs c1 == c2, got {c1} and {c2}")
        self.c = int(c1 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c1, 1)
        self.m = nn.Sequential(*(PSABlock(self.c, attn_ratio=0.5, num_heads=max(self.c // 64, 1)) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A CSP block whose inner blocks are attention blocks (YOLO11)."""
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        return self.cv2(torch.cat((a, self.m(b)), 1))


class SCDown(nn.Module):
    """YOLOv10's spatial-channel decoupled downsampling: a 1x1 channel conv, then a strided depth-wise conv."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 2):
        super().__init__()
        self.cv1 = Conv(c1, c2, 1, 1)
        self.cv2 = Conv(c2, c2, k, s, g=c2, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pointwise then depthwise strided convolution (YOLOv10's downsampling)."""
        return self.cv2(self.cv1(x))


class PSA(PSABlock):
    """YOLOv10's partial self-attention: one PSA block (attention and feed-forward, each residual) on half the
    channels, the other half passed through; its ``attn``/``ffn`` sit on the module itself, as the checkpoints name them."""

    def __init__(self, c1: int, c2: int, e: float = 0.5):
        if c1 != c2:
            raise ValueError(f"PSA needs c1 == c2, got {c1} and {c2}")
        c = int(c1 * e)
        super().__init__(c, attn_ratio=0.5, num_heads=max(c // 64, 1))
        self.c = c
        self.cv1 = Conv(c1, 2 * c, 1, 1)
        self.cv2 = Conv(2 * c, c1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """YOLOv10's partial self-attention: attention on half the channels."""
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        return self.cv2(torch.cat((a, super().forward(b)), 1))


class RepVGGDW(nn.Module):
    """A 7x7 and a 3x3 depth-wise conv summed, then SiLU (YOLOv10's large-kernel CIB); kept as two branches."""

    def __init__(self, ed: int):
        super().__init__()
        self.conv = Conv(ed, ed, 7, 1, 3, g=ed, act=False)
        self.conv1 = Conv(ed, ed, 3, 1, 1, g=ed, act=False)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Two depthwise branches (7x7 and 3x3) summed, then the activation."""
        return self.act(self.conv(x) + self.conv1(x))


class CIB(nn.Module):
    """YOLOv10's compact inverted block: depth-wise and point-wise convs alternating, with a residual."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, e: float = 0.5, lk: bool = False):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = nn.Sequential(
            Conv(c1, c1, 3, g=c1),
            Conv(c1, 2 * c_, 1),
            RepVGGDW(2 * c_) if lk else Conv(2 * c_, 2 * c_, 3, g=2 * c_),
            Conv(2 * c_, c2, 1),
            Conv(c2, c2, 3, g=c2),
        )
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """YOLOv10's compact inverted block, with a residual when shapes allow."""
        return x + self.cv1(x) if self.add else self.cv1(x)


class C2fCIB(C2f):
    """C2f with CIB blocks (YOLOv10)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, lk: bool = False, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.m = nn.ModuleList(CIB(self.c, self.c, shortcut, e=1.0, lk=lk) for _ in range(n))


class AreaAttention(nn.Module):
    """YOLO12's area attention: self-attention within ``area`` horizontal strips of the feature map (the flattened
    positions cut into ``area`` equal runs), heads of 32 channels, plus a 7x7 depth-wise positional conv on v.
    Parameter names as the checkpoints': ``qkv``, ``proj``, ``pe``."""

    def __init__(self, dim: int, num_heads: int, area: int = 1):
        super().__init__()
        self.area = area
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        inner = self.head_dim * num_heads
        self.qkv = Conv(dim, inner * 3, 1, act=False)
        self.proj = Conv(inner, dim, 1, act=False)
        self.pe = Conv(inner, dim, 7, 1, 3, g=dim, act=False)
        self.softmax_left = False  # the same values as weights @ v^T (quantization.tflite_graph.integer_attention)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """YOLO12's area attention: self-attention within horizontal or vertical areas of the map."""
        b, c, h, w = x.shape
        n = h * w
        area = self.area if self.area > 1 else 1
        if n % area:
            raise ValueError(f"area attention needs the {h}x{w} feature map to split into {area} equal areas")
        # (b, n, 3c) positions-major, then each area becomes its own batch entry
        qkv = self.qkv(x).flatten(2).transpose(1, 2).reshape(b * area, n // area, 3 * c)
        bb, nn_ = qkv.shape[:2]
        heads = qkv.view(bb, nn_, self.num_heads, 3 * self.head_dim).permute(0, 2, 3, 1)  # (bb, heads, 3*hd, nn)
        q, k, v = heads.split((self.head_dim, self.head_dim, self.head_dim), dim=2)
        weights = ((q.transpose(-2, -1) @ k) * (self.head_dim**-0.5)).softmax(dim=-1)  # (bb, heads, nn, nn)
        if self.softmax_left:  # the same values (quantization.tflite_graph.integer_attention)
            out = (weights @ v.transpose(-2, -1)).permute(0, 2, 1, 3)  # (bb, nn, heads, hd)
        else:
            out = (v @ weights.transpose(-2, -1)).permute(0, 3, 1, 2)  # (bb, nn, heads, hd)
        v = v.permute(0, 3, 1, 2)
        out = out.reshape(b, n, c).reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous()
        v = v.reshape(b, n, c).reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous()
        return self.proj(out + self.pe(v))


class AreaBlock(nn.Module):
    """Area attention then a two-conv MLP, each with a residual (Ultralytics' ``ABlock``)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 1.2, area: int = 1):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.attn = AreaAttention(dim, num_heads, area)
        self.mlp = nn.Sequential(Conv(dim, hidden, 1), Conv(hidden, dim, 1, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Area attention then MLP, each with a residual."""
        x = x + self.attn(x)
        return x + self.mlp(x)


class A2C2f(nn.Module):
    """YOLO12's R-ELAN block: cv1, then ``n`` stages (two area-attention blocks each when ``a2``, else a C3k), every
    stage's output concatenated into cv2; with ``residual`` (the l/x scales) a learned per-channel ``gamma`` scales
    the block's output onto its input."""

    def __init__(self, c1: int, c2: int, n: int = 1, a2: bool = True, area: int = 1, residual: bool = False,
                 mlp_ratio: float = 2.0, e: float = 0.5, g: int = 1, shortcut: bool = True):
        super().__init__()
        c_ = int(c2 * e)
        if c_ % 32:
            raise ValueError(f"A2C2f needs hidden channels divisible by 32 (attention heads of 32), got {c_}")
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv((1 + n) * c_, c2, 1)
        self.gamma = nn.Parameter(0.01 * torch.ones(c2)) if a2 and residual else None
        self.m = nn.ModuleList(
            nn.Sequential(*(AreaBlock(c_, c_ // 32, mlp_ratio, area) for _ in range(2))) if a2 else C3k(c_, c_, 2, shortcut, g)
            for _ in range(n)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """YOLO12's residual CSP block of area-attention blocks (scaled residual where the yaml says so)."""
        y = [self.cv1(x)]
        for stage in self.m:
            y.append(stage(y[-1]))
        out = self.cv2(torch.cat(y, 1))
        return x + self.gamma.view(1, -1, 1, 1) * out if self.gamma is not None else out


class DFL(nn.Module):
    """Distribution focal loss integral: the expected bin of a softmax over ``c1`` bins."""

    def __init__(self, c1: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(c1, dtype=torch.float32).view(1, c1, 1, 1)
        self.c1 = c1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Distribution focal loss decoding: the expected bin of each box side's softmax."""
        b, _, a = x.shape
        return self.conv(x.view(b, 4, self.c1, a).transpose(2, 1).softmax(1)).view(b, 4, a)
