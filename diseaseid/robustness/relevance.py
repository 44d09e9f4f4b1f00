"""Where the explanations put their relevance: the share of positive LRP and Grad-CAM relevance that falls on
the head (the non-zero pixels of the head-cropped input), per shipped model, on validation slices.

A model that decides by the background, the padding or the corners puts its relevance there; a model that
looks at the brain keeps it inside. Positive relevance only: LRP's negative evidence is not "where the model
looked". Grad-CAM is upsampled from the last feature map (7 x 7 for Lite0), so part of its mass spills over
the head's edge by construction; the figure is measured as it is shown, not corrected.
"""
from __future__ import annotations

import numpy as np


def inside_share(maps: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Per image: positive mass of ``maps`` (N x H x W) on ``head`` (N x H x W bool) over its positive mass
    (NaN where a map has none)."""
    pos = np.clip(maps.astype(np.float64), 0, None)
    total = pos.sum(axis=(1, 2))
    inside = (pos * head).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total, np.nan)


def relevance_inside_head(predictor, images: np.ndarray, methods=("lrp", "gradcam"), batch: int = 8) -> dict:
    """``images``: N x 224 x 224 x 3 uint8 as served (head-cropped). {method: {mean, min, p10, n}}."""
    import torch

    from diseaseid.data.tensors import normalize
    from diseaseid.explain.maps import explain_maps

    head = images.max(axis=3) > 0
    shares: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    for i in range(0, len(images), batch):
        x = normalize(images[i:i + batch], predictor.device)
        with torch.enable_grad():
            maps, _ = explain_maps(predictor.model, x, methods)
        for m in methods:
            shares[m].append(inside_share(maps[m], head[i:i + batch]))
    out = {}
    for m, parts in shares.items():
        s = np.concatenate(parts)
        s = s[np.isfinite(s)]
        out[m] = {"mean": float(s.mean()), "min": float(s.min()), "p10": float(np.percentile(s, 10)),
                  "n": int(len(s))}
    return out
