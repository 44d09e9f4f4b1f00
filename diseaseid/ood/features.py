"""What the OOD detector reads from its model: the pooled penultimate features and the logits of one forward pass,
and a disk cache of them for the fitting and evaluation commands (``runs/ood-features/``, keyed by the weights'
version and the data's fingerprint, so a retrained detector model never reads stale features)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from diseaseid.data.tensors import normalize
from diseaseid.paths import REPO_ROOT


@torch.inference_mode()
def features_and_logits(model: nn.Module, images: np.ndarray, device: torch.device | str = "cpu",
                        batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """N x 224 x 224 x 3 uint8 -> (N x F pooled penultimate features, N x C logits), float32, one forward pass
    (timm's ``forward_features`` / ``forward_head`` interface, which every registered model answers)."""
    feats, logits = [], []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start:start + batch_size], device)
        fmap = model.forward_features(x)
        pooled = model.forward_head(fmap, pre_logits=True)
        feats.append(pooled.float().cpu().numpy())
        logits.append(model.forward_head(fmap).float().cpu().numpy())
    if not feats:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(feats), np.concatenate(logits)


def cache_path(version: str, key: str) -> Path:
    return REPO_ROOT / "runs" / "ood-features" / f"{version}-{key}.npz"


def cached_features_and_logits(model: nn.Module, version: str, key: str, load_images) -> tuple[np.ndarray, np.ndarray]:
    """``features_and_logits`` of ``load_images()``, computed once per (model version, ``key``) and kept under
    runs/ (not committed)."""
    path = cache_path(version, key)
    if path.exists():
        with np.load(path) as z:
            return z["features"], z["logits"]
    feats, logits = features_and_logits(model, load_images())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, features=feats, logits=logits)
    tmp.replace(path)
    return feats, logits
