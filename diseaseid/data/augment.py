"""Batched geometric and photometric augmentation on tensors (runs on whatever device the batch is on).

Only small rotations, scalings, shifts and brightness/contrast changes: no flips and no crops, because a
lesion's side and position are part of the diagnosis.
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
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * (1 + contrast).view(n, 1, 1, 1) + mean + brightness.view(n, 1, 1, 1)).clamp_(0, 1)


def augment(x: torch.Tensor, cfg: AugmentConfig = AugmentConfig(), generator: torch.Generator | None = None
            ) -> torch.Tensor:
    """``x``: N x C x H x W in [0, 1]. A random view of each image, same shape, also in [0, 1]."""
    return apply_params(x, sample_params(x.shape[0], cfg, generator))
