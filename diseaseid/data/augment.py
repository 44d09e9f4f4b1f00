"""Batched geometric and photometric augmentation on tensors (runs on whatever device the batch is on).

Small rotations, scalings, shifts and brightness/contrast changes, and the changes of acquisition that a
scanner's export brings (:func:`acquisition`: Rician noise, gamma, a smooth bias field): no flips and no
crops, because a lesion's side and position are part of the diagnosis. The images are head-cropped
(:mod:`diseaseid.data.head`), so every change keeps the background at zero, as serving will see it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    rotate_deg: float = 10.0
    scale: float = 0.08
    shift: float = 0.05  # fraction of the image size
    brightness: float = 0.1
    contrast: float = 0.1
    noise: float = 0.04  # Rician noise sigma, up to this fraction of the intensity range (10 of 255)
    noise_p: float = 0.7  # share of images that get noise at all
    gamma: float = 0.25  # gamma drawn log-uniformly in [1/1.25, 1.25]
    bias: float = 0.15  # a smooth multiplicative field, up to +-15% across the head
    # A coarser matrix: the head down-sampled to a scale drawn in [1 - blur, 1] and brought back to size (what
    # a 160 px acquisition, a wider field of view cropped back, or a smoother reconstruction leaves); 0: off.
    blur: float = 0.0
    blur_p: float = 0.5  # share of images that get it at all


def sample_params(n: int, cfg: AugmentConfig = AugmentConfig(), generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """Draw the parameters of ``n`` random views: an ``n x 5`` tensor (angle, scale, tx, ty, contrast,
    brightness are derived from it by :func:`apply_params`). Drawn on the CPU, so a seeded generator gives
    the same views on any device."""
    u = torch.rand(n, 6, generator=generator) * 2 - 1
    scales = torch.tensor([math.radians(cfg.rotate_deg), cfg.scale, cfg.shift * 2, cfg.shift * 2,
                           cfg.contrast, cfg.brightness])
    return u * scales


def apply_params(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Apply the views ``params`` (from :func:`sample_params`, one row per image) to ``x`` (N x C x H x W in
    [0, 1]). Returns a new tensor of the same shape, also in [0, 1]."""
    n = x.shape[0]
    params = params.to(device=x.device, dtype=x.dtype)
    angle, scale, tx, ty, contrast, brightness = params.unbind(1)
    scale = 1 + scale  # affine_grid coordinates span [-1, 1], so shifts are twice the fraction
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, [n, *x.shape[1:]], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    head = out.amax(dim=1, keepdim=True) > 0  # the background stays exactly zero
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * (1 + contrast).view(n, 1, 1, 1) + mean + brightness.view(n, 1, 1, 1)
    return out.mul_(head).clamp_(0, 1)


def acquisition(x: torch.Tensor, cfg: AugmentConfig = AugmentConfig(),
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Random changes of acquisition inside the head (``x``: N x C x H x W in [0, 1], background 0): a gamma,
    a smooth bias field (a random plane and saddle in log intensity) and magnitude (Rician) noise, as a scanner
    leaves it: ``sqrt((x + s n1)^2 + (s n2)^2)``. Drawn on the CPU, so a seeded generator repeats on any
    device."""
    n, _, h, w = x.shape
    u = torch.rand(n, 8, generator=generator).to(device=x.device, dtype=x.dtype)
    head = x.amax(dim=1, keepdim=True) > 0
    gamma = torch.exp((u[:, 0] * 2 - 1) * math.log(1 + cfg.gamma)).view(n, 1, 1, 1)
    out = x.clamp(min=0) ** gamma
    yy = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, h, 1)
    xx = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, w)
    c = (u[:, 1:4] * 2 - 1) * cfg.bias / 2
    field = torch.exp(c[:, 0].view(n, 1, 1) * xx + c[:, 1].view(n, 1, 1) * yy + c[:, 2].view(n, 1, 1) * xx * yy)
    out = out * field.unsqueeze(1)
    sigma = (u[:, 4] * cfg.noise * (u[:, 5] < cfg.noise_p)).view(n, 1, 1, 1)
    noise = torch.randn(2, n, 1, h, w, generator=generator).to(device=x.device, dtype=x.dtype)
    out = torch.sqrt((out + sigma * noise[0]) ** 2 + (sigma * noise[1]) ** 2)
    return out.mul_(head).clamp_(0, 1)


def resolution(x: torch.Tensor, cfg: AugmentConfig = AugmentConfig(),
               generator: torch.Generator | None = None, levels: int = 8) -> torch.Tensor:
    """A share ``cfg.blur_p`` of the images down-sampled (antialiased) to a scale in ``[1 - cfg.blur, 1]``,
    quantised to ``levels`` steps, and resized back (bilinear); the background stays zero. ``x``: N x C x H x W
    in [0, 1]; returns a new tensor. Drawn on the CPU, so a seeded generator repeats on any device."""
    n, _, h, w = x.shape
    u = torch.rand(n, 2, generator=generator)
    if cfg.blur <= 0:
        return x.clone()
    step = torch.floor(u[:, 0] * levels).clamp_(max=levels - 1)  # 0 .. levels-1; level 0 keeps the size
    scale = 1 - cfg.blur * (step + 1) / levels
    scale = torch.where(u[:, 1] < cfg.blur_p, scale, torch.ones_like(scale))
    out = x.clone()
    head = x.amax(dim=1, keepdim=True) > 0
    for s in torch.unique(scale).tolist():
        if s >= 1:
            continue
        idx = torch.nonzero(scale == s).flatten().to(x.device)
        small = F.interpolate(x[idx], size=(max(8, round(h * s)), max(8, round(w * s))), mode="bilinear",
                              antialias=True, align_corners=False)
        out[idx] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return out.mul_(head).clamp_(0, 1)


def augment(x: torch.Tensor, cfg: AugmentConfig = AugmentConfig(), generator: torch.Generator | None = None
            ) -> torch.Tensor:
    """``x``: N x C x H x W in [0, 1]. A random view of each image, same shape, also in [0, 1]."""
    x = apply_params(x, sample_params(x.shape[0], cfg, generator))
    if cfg.blur > 0:  # drawn only when on, so the views of runs without it stay as they were
        x = resolution(x, cfg, generator)
    return acquisition(x, cfg, generator)
