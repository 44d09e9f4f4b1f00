"""The torch side of pre-processing: 8-bit RGB arrays from :mod:`diseaseid.data.preprocess` to the networks'
ImageNet-normalised tensors and back. Apart from ``preprocess`` so that decoding an image never loads torch
(the explain API and the web page decode uploads without it)."""
from __future__ import annotations

import numpy as np
import torch

from diseaseid.data.preprocess import IMAGENET_MEAN, IMAGENET_STD


def normalize(batch: np.ndarray | torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 NHWC (or one HWC) -> float32 NCHW, ImageNet mean/std."""
    if isinstance(batch, np.ndarray) and not batch.flags.writeable:
        batch = batch.copy()
    t = torch.as_tensor(batch)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if device is not None:
        t = t.to(device, non_blocking=True)
    t = t.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=t.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=t.device).view(1, 3, 1, 1)
    return (t - mean) / std


def denormalize(x: torch.Tensor) -> np.ndarray:
    """Inverse of ``normalize`` for display: NCHW float -> NHWC uint8."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    img = (x.detach() * std + mean).clamp(0, 1).mul(255).round().byte()
    return img.permute(0, 2, 3, 1).cpu().numpy()
