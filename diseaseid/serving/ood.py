"""Out-of-distribution checks: cheap image statistics plus an energy score on the model's logits.

Energy score: Liu et al. 2020, "Energy-based Out-of-distribution Detection" (E(x) = -logsumexp(logits)).
The image checks catch what an MRI slice never is: colourful, flat, or pure noise.
"""
from __future__ import annotations

import numpy as np
import torch


def energy_score(logits: torch.Tensor) -> torch.Tensor:
    """Higher means less like the training data (negative free energy, flipped)."""
    return -torch.logsumexp(logits.float(), dim=1)


def image_checks(img: np.ndarray) -> list[str]:
    """Reasons why a 224x224x3 uint8 image cannot be an MRI slice (empty list when it might be)."""
    reasons = []
    # Every statistic below is coarse: half resolution keeps them and quarters the cost on the serving path.
    x = img[::2, ::2].astype(np.float32)
    gray = x.mean(axis=2)
    # MRI is grayscale: channels agree (JPEG chroma noise stays within a few levels). Measured over the pixels
    # that are not background, so a dark photo with a few colourful objects is caught too.
    chroma = np.abs(x - gray[..., None]).mean(axis=2)
    lit = gray > 30
    chroma_lit = float(chroma[lit].mean()) if lit.any() else 0.0
    if chroma.mean() > 6.0 or chroma_lit > 3.0:
        reasons.append(f"colour image (mean chroma {max(chroma.mean(), chroma_lit):.1f}); MRI slices are grayscale")
    if gray.std() < 4.0:
        reasons.append("almost uniform image")
    # Pure noise: neighbouring pixels barely correlate; anatomy is smooth.
    a, b = gray[:, :-1].ravel(), gray[:, 1:].ravel()
    if a.std() > 1 and b.std() > 1:
        corr = float(np.corrcoef(a, b)[0, 1])
        if corr < 0.25:
            reasons.append(f"noise-like image (neighbour correlation {corr:.2f})")
    # An MRI slice has a dark background around the head.
    border = np.concatenate([gray[:4].ravel(), gray[-4:].ravel(), gray[:, :4].ravel(), gray[:, -4:].ravel()])
    # (validation MRI: border median at most 36 of 255)
    if np.median(border) > 60:
        reasons.append("bright background; MRI slices have a dark background")
    return reasons
