"""What 8-bit weights alone cost a network: its float PyTorch forward with only the convolution weights changed.

A full-integer file rounds weights and activations together; this separates the weights. Each convolution's weights
are rounded to int8 per output channel as the TFLite file holds them (symmetric, scale max|w| / 127), everything else
stays float32, and the network is scored on all coco-val-mini images (square, the quantize command's image set and
validator). Ways: ``rtn`` (round to nearest, every convolution), ``depthwise`` / ``regular`` (only those), ``mse``
(every convolution, each channel's scale of least squared error), ``gptq`` (regular ones, each layer's output error
on calibration inputs minimised column by column, the file's scale kept), ``noise`` (regular ones, a uniform random
step instead of rounding: the mAP change any perturbation of that size makes). BENCHMARKS.md, "YOLOv10n's last
point".

    .venv/bin/python bench/int8_weights_alone.py MODEL.pt [--ways rtn regular gptq noise] [--seeds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "src"))

from benchmarks_md import assets_dir  # noqa: E402

WAYS = ("rtn", "depthwise", "regular", "mse", "gptq", "noise")


def _rounded(w, scale):
    import torch

    return torch.clamp(torch.round(w / scale), -127, 127) * scale


def _mse_scale(w, amax):
    """Per output channel, the scale (a fraction 0.5 .. 1 of max|w| / 127) whose rounding error is least."""
    import torch

    best, chosen = torch.full_like(amax, float("inf")), amax / 127
    for f in torch.linspace(0.5, 1.0, 51):
        scale = amax * f / 127
        error = ((_rounded(w, scale) - w) ** 2).sum(dim=(1, 2, 3), keepdim=True)
        better = error < best
        best, chosen = torch.where(better, error, best), torch.where(better, scale, chosen)
    return chosen


def _hessians(net, convs, images, dtype):
    """For each convolution, X Xᵀ of its input patches (im2col columns) over the calibration images."""
    import torch

    hessians = {c: torch.zeros(c.weight[0].numel(), c.weight[0].numel(), dtype=torch.float64) for c in convs}

    def hook(module, inputs, _output):
        cols = torch.nn.functional.unfold(inputs[0].float(), module.kernel_size, dilation=module.dilation,
                                          padding=module.padding, stride=module.stride)[0].double()
        hessians[module] += cols @ cols.T

    handles = [c.register_forward_hook(hook) for c in convs]
    try:
        with torch.no_grad():
            for image in images:
                net(torch.from_numpy(np.ascontiguousarray(image.tensor())).to(dtype))
    finally:
        for handle in handles:
            handle.remove()
    return hessians


def _gptq(w, scale, hessian, damp: float = 0.01):
    """GPTQ's column-by-column rounding of ``w`` (out, K) on the grid ``scale`` (out, 1), each column's error spread
    over the columns not yet rounded through the inverse Hessian's Cholesky factor."""
    import torch

    w = w.clone()
    hessian = hessian.clone()
    dead = torch.diag(hessian) == 0
    hessian[dead, dead] = 1
    w[:, dead] = 0
    hessian += damp * torch.mean(torch.diag(hessian)) * torch.eye(len(hessian), dtype=hessian.dtype)
    upper = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(hessian)), upper=True)
    out = torch.zeros_like(w)
    for i in range(w.shape[1]):
        column = w[:, i:i + 1]
        out[:, i:i + 1] = _rounded(column, scale)
        error = (column - out[:, i:i + 1]) / upper[i, i]
        w[:, i + 1:] -= error @ upper[i:i + 1, i + 1:]
    return out


def _apply(net, way: str, images, seed: int, dtype) -> int:
    """Change the weights of ``net`` in place by ``way``; how many convolutions changed."""
    import torch

    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)
             and (way in ("rtn", "mse") or (m.groups > 1) == (way == "depthwise"))]
    hessians = _hessians(net, convs, images, dtype) if way == "gptq" else {}
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv in convs:
            w = conv.weight
            amax = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
            if way == "mse":
                new = _rounded(w, _mse_scale(w, amax))
            elif way == "gptq":
                flat = w.double().reshape(w.shape[0], -1)
                new = _gptq(flat, amax.double().reshape(-1, 1) / 127, hessians[conv]).reshape(w.shape)
            elif way == "noise":
                new = w + (torch.rand(w.shape, generator=generator).to(w.dtype) - 0.5) * amax / 127
            else:
                new = _rounded(w, amax / 127)
            w.copy_(new.to(w.dtype))
    return len(convs)


def main() -> int:
    """The command line of the module docstring."""
    import copy

    from yoloparity.data.datasets import load_dataset
    from yoloparity.quantization.evaluation import score_raw
    from yoloparity.quantization.image_set import load_quant_images
    from yoloparity.yolo_model import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a .pt checkpoint")
    parser.add_argument("--ways", nargs="+", choices=WAYS, default=list(WAYS))
    parser.add_argument("--seeds", type=int, default=3, help="random draws of --ways noise (default 3)")
    parser.add_argument("--calib-images", type=int, default=16, help="gptq's calibration images (default 16)")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    data = str(assets_dir(ROOT) / "coco-val-mini" / "data.yaml")
    rows = []
    with load_model(args.model, backend="torch", threads=2) as model:
        images = load_quant_images(load_dataset(data), data, model.spec, args.imgsz, 128, None, 2)
        every = sorted([i.entry.id for i in images.calibration] + list(images.held_out_ids()))
        backend = model.backend
        original = copy.deepcopy(backend.net)
        dtype = next(original.parameters()).dtype
        seeds = {w: list(range(1, args.seeds + 1)) if w == "noise" else [0] for w in args.ways}
        runs = [("float", 0)] + [(w, s) for w in args.ways for s in seeds[w]]
        for way, seed in runs:
            backend.net = copy.deepcopy(original)
            changed = 0 if way == "float" else _apply(backend.net, way, images.calibration[:args.calib_images], seed,
                                                      dtype)
            scores = score_raw(backend.run, model.spec, images, args.model, "torch")
            rows.append({"way": way, "seed": seed, "convolutions": changed, "map50_95": scores.map(every)[0]})
            print(f"{way:10s} seed {seed}  convolutions {changed:4d}  mAP50-95 {rows[-1]['map50_95']:.4f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "images": len(every), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
