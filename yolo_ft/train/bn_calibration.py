"""BatchNorm statistics for a model whose BatchNorm was fused away (e.g. rebuilt from an ONNX export).

An exported model only keeps ``conv_fused(x) = W_f * x + b_f``. To fine-tune it we need real BN
layers again, and the choice of BN parameters matters in *train* mode: with default statistics
(mean 0, var 1) a train-mode BN renormalises every channel to unit variance, so features drift
1.4-4.8x away from what the pretrained head expects and fine-tuning starts from a damaged model.
Here the statistics of ``W_f * x`` are measured on real images and the BN is set to

    running_mean = mean, running_var = var, gamma = sqrt(var + eps), beta = b_f + mean

so ``bn(conv(x)) == conv_fused(x)`` in eval mode (up to float rounding) while train-mode batch
statistics land close to the running ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from yolo_ft.records import YoloFtError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def letterbox(image_bgr: np.ndarray, imgsz: int, pad_value: int = 114) -> np.ndarray:
    """Resize keeping aspect ratio and pad to a centred ``imgsz`` square, like Ultralytics' LetterBox
    (auto=False). Returns a float32 CHW RGB array in [0, 1]: the exact tensor an exported model expects."""
    h, w = image_bgr.shape[:2]
    r = min(imgsz / h, imgsz / w)
    nw, nh = round(w * r), round(h * r)
    if (nw, nh) != (w, h):
        image_bgr = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
    dw, dh = (imgsz - nw) / 2, (imgsz - nh) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    out = cv2.copyMakeBorder(image_bgr, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    return np.ascontiguousarray(out[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32) / 255.0


def expand_image_paths(items: Iterable[str | Path]) -> list[Path]:
    """Files as given plus image files (sorted) inside given folders; a clear error for anything missing."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            raise YoloFtError(f"calibration image not found: {p}")
    if not out:
        raise YoloFtError("no calibration images: pass image files or folders that contain images")
    return out


def read_image(path: Path) -> np.ndarray:
    """cv2.imread with an error that names the file instead of returning None."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise YoloFtError(f"{path}: not a readable image")
    return img


def calibration_views(paths: Sequence[Path], imgsz: int) -> list[torch.Tensor]:
    """Deterministic training-like views of the calibration images, each a (1, 3, imgsz, imgsz) tensor.

    Per image: the letterboxed image and its mirror. With 2+ images also 2x2 mosaics at half scale
    (what Ultralytics' mosaic augmentation feeds the network most of the time), so statistics cover
    both object scales the model sees in training.
    """
    images = [read_image(p) for p in paths]
    views = []
    for img in images:
        lb = letterbox(img, imgsz)
        views.append(lb)
        views.append(np.ascontiguousarray(lb[:, :, ::-1]))
    if len(images) >= 2:
        half = imgsz // 2
        tiles = [letterbox(img, half) for img in images]
        for shift in range(len(tiles)):
            t = [tiles[(shift + k) % len(tiles)] for k in range(4)]
            top = np.concatenate([t[0], t[1]], axis=2)
            bottom = np.concatenate([t[2], t[3]], axis=2)
            mosaic = np.zeros((3, imgsz, imgsz), dtype=np.float32) + 114 / 255.0
            m = np.concatenate([top, bottom], axis=1)
            mosaic[:, : m.shape[1], : m.shape[2]] = m
            views.append(mosaic)
    return [torch.from_numpy(v)[None] for v in views]


def conv_bn_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Ultralytics ``Conv``-style modules: an ``nn.Conv2d`` named ``conv`` followed by ``nn.BatchNorm2d`` ``bn``."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(getattr(m, "conv", None), nn.Conv2d) and isinstance(getattr(m, "bn", None), nn.BatchNorm2d)
    ]


@dataclass
class _Stats:
    """Per-channel running sums in float64: one pass over many images without holding activations."""

    n: int = 0
    s1: torch.Tensor | None = None
    s2: torch.Tensor | None = None

    def add(self, y: torch.Tensor) -> None:
        y = y.detach().double()
        s1, s2 = y.sum(dim=(0, 2, 3)), (y * y).sum(dim=(0, 2, 3))
        self.s1 = s1 if self.s1 is None else self.s1 + s1
        self.s2 = s2 if self.s2 is None else self.s2 + s2
        self.n += y.shape[0] * y.shape[2] * y.shape[3]

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.s1 / self.n
        var = (self.s2 / self.n - mean * mean).clamp_min(0.0)
        return mean, var


@torch.no_grad()
def fused_conv_params(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The (weight, bias) of the single conv equivalent to ``m.bn(m.conv(x))`` in eval mode."""
    bn = m.bn
    s = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    w = m.conv.weight.double() * s.view(-1, 1, 1, 1)
    b = bn.bias.double() - bn.running_mean.double() * s
    if m.conv.bias is not None:
        b = b + m.conv.bias.double() * s
    return w, b


@torch.no_grad()
def set_unfused(m: nn.Module, w_fused: torch.Tensor, b_fused: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> None:
    """Write conv+BN so that eval output equals the fused conv and BN running stats are (mean, var)."""
    bn = m.bn
    dtype = m.conv.weight.dtype
    m.conv.weight.copy_(w_fused.to(dtype))
    if m.conv.bias is not None:
        m.conv.bias.zero_()
    mean32 = mean.to(dtype)
    var32 = var.to(dtype)
    bn.running_mean.copy_(mean32)
    bn.running_var.copy_(var32)
    # gamma from the float32 var exactly as BN will read it, so gamma / sqrt(var + eps) == 1 to the ulp
    bn.weight.copy_(torch.sqrt(var32 + bn.eps))
    bn.bias.copy_((b_fused + mean32.double()).to(dtype))
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.zero_()


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, views: Sequence[torch.Tensor]) -> dict[str, int]:
    """Re-estimate every Conv+BN's statistics on ``views`` keeping eval output unchanged.

    Works on any Ultralytics model: each Conv+BN is first folded into its equivalent conv, the
    statistics of that conv's output (bias excluded) are gathered in eval mode with hooks — eval
    output does not depend on the statistics we are about to change, so one pass suffices — and
    the layer is rewritten with :func:`set_unfused`.
    """
    if not views:
        raise YoloFtError("batch-norm calibration needs at least one image")
    mods = conv_bn_modules(model)
    stats = {name: _Stats() for name, _ in mods}
    hooks = [m.conv.register_forward_hook(lambda _m, _i, out, st=stats[name]: st.add(out)) for name, m in mods]
    was_training = model.training
    model.eval()
    try:
        for v in views:
            model(v.to(next(model.parameters()).device, next(model.parameters()).dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    for name, m in mods:
        w, b = fused_conv_params(m)
        # hooks saw y = conv(x) = W x (+ c); the fused conv without bias is s * W x per channel
        s = m.bn.weight.double() / torch.sqrt(m.bn.running_var.double() + m.bn.eps)
        mean, var = stats[name].mean_var()
        if m.conv.bias is not None:
            mean = mean - m.conv.bias.double()
        set_unfused(m, w, b, mean * s, var * s * s)
    return {"layers": len(mods), "views": len(views), "pixels_per_layer_min": min(st.n for st in stats.values())}


@torch.no_grad()
def train_eval_drift(model: nn.Module, views: Sequence[torch.Tensor]) -> dict[str, float]:
    """How far train-mode features are from eval-mode features (model restored afterwards).

    For every Conv+BN output, ratio = rms(train-mode output) / rms(eval-mode output) on the same
    input (train mode feeds its own, drifting features forward, as it does in fine-tuning). Also the
    relative L2 error of the head's raw outputs. A well-calibrated model has ratios near 1.
    """
    import copy

    work = copy.deepcopy(model).float()
    for mod in work.modules():  # BN momentum 0: train-mode forwards must not move the running stats
        if isinstance(mod, nn.BatchNorm2d):
            mod.momentum = 0.0
    mods = conv_bn_modules(work)
    outs: dict[str, list[torch.Tensor]] = {}

    def hook(name):
        def f(_m, _i, out):
            outs.setdefault(name, []).append(out.detach().double())

        return f

    hooks = [m.register_forward_hook(hook(name)) for name, m in mods]
    try:
        work.eval()
        eval_head = [_raw_head(work(v)) for v in views]
        eval_outs = {k: list(v) for k, v in outs.items()}
        outs.clear()
        work.train()
        train_head = [_raw_head(work(v)) for v in views]
        train_outs = outs
    finally:
        for h in hooks:
            h.remove()
    ratios = []
    for name, _ in mods:
        for te, tt in zip(eval_outs[name], train_outs[name], strict=True):
            re = te.pow(2).mean().sqrt().item()
            rt = tt.pow(2).mean().sqrt().item()
            if re > 1e-8:
                ratios.append(rt / re)
    head_err = []
    for he, ht in zip(eval_head, train_head, strict=True):
        num = sum((a - b).pow(2).sum() for a, b in zip(he, ht, strict=True))
        den = sum(a.pow(2).sum() for a in he)
        head_err.append(float((num / den).sqrt()))
    r = np.array(ratios)
    return {
        "ratio_min": float(r.min()),
        "ratio_max": float(r.max()),
        "max_abs_log_ratio": float(np.abs(np.log(r)).max()),
        "median_abs_log_ratio": float(np.median(np.abs(np.log(r)))),
        "head_rel_l2": float(max(head_err)),
    }


def _raw_head(out) -> list[torch.Tensor]:
    """Detect's raw per-level maps: train mode returns them, eval mode returns (decoded, raw)."""
    if isinstance(out, (list, tuple)) and len(out) == 2 and isinstance(out[0], torch.Tensor) and out[0].dim() == 3:
        out = out[1]
    if isinstance(out, dict):  # newer heads return a dict of named outputs
        out = [v for v in out.values() if isinstance(v, torch.Tensor)]
    return [t.detach().double() for t in out]
