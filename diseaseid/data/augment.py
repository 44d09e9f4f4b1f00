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


def augment(x: torch.Tensor, cfg: AugmentConfig = AugmentConfig(), generator: torch.Generator | None = None
            ) -> torch.Tensor:
    """``x``: N x C x H x W in [0, 1]. Returns a new tensor of the same shape, also in [0, 1]."""
    n, dev = x.shape[0], x.device

    def uniform(r: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator, device=generator.device if generator else "cpu") * 2 - 1
                ).to(dev) * r

    angle = uniform(math.radians(cfg.rotate_deg))
    scale = 1 + uniform(cfg.scale)
    tx, ty = uniform(cfg.shift * 2), uniform(cfg.shift * 2)  # affine_grid coordinates span [-1, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    contrast = (1 + uniform(cfg.contrast)).view(n, 1, 1, 1).to(x.dtype)
    brightness = uniform(cfg.brightness).view(n, 1, 1, 1).to(x.dtype)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    return ((out - mean) * contrast + mean + brightness).clamp_(0, 1)
