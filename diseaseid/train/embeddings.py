"""Slice embeddings computed once and cached, so subject-level heads train in seconds and can be compared
fairly by cross-validation (``diseaseid cv``).

``imagenet`` embeddings are EfficientNet-Lite0's ImageNet features, frozen: the global average of the last
feature map (1280-d, what ``slice_features`` gives and the served dementia models read) and of three earlier
stages (40, 80 and 112 channels: finer texture such as widened sulci), in one forward pass.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from diseaseid.data.dataset import ImageFolder
from diseaseid.paths import REPO_ROOT
from diseaseid.train.trainer import DeviceImages

# timm efficientnet_lite0 stages whose pooled outputs join the embedding (besides the final 1280-d one).
MID_STAGES = (2, 3, 4)
CACHE_DIR = REPO_ROOT / "runs" / "embeddings"


@torch.inference_mode()
def multiscale_features(backbone: nn.Module, images: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """``{"final": N x 1280, "mid": N x (sum of MID_STAGES channels)}`` pooled features of a Lite0."""
    device = next(backbone.parameters()).device
    data = DeviceImages(images, device, channels_last=True)
    backbone = backbone.eval().to(memory_format=torch.channels_last)
    final, mid = [], []
    for s in range(0, len(data), batch_size):
        x = data.batch(torch.arange(s, min(s + batch_size, len(data)), device=device))
        x = backbone.bn1(backbone.conv_stem(x))
        pooled = []
        for i, block in enumerate(backbone.blocks):
            x = block(x)
            if i in MID_STAGES:
                pooled.append(x.mean((2, 3)))
        x = backbone.bn2(backbone.conv_head(x))
        final.append(backbone.global_pool(x).flatten(1).float().cpu())
        mid.append(torch.cat(pooled, 1).float().cpu())
    return {"final": torch.cat(final).numpy(), "mid": torch.cat(mid).numpy()}


def imagenet_backbone() -> nn.Module:
    from diseaseid.models import create_model

    return create_model("lite0", num_classes=1000, pretrained=True).eval()


def cached_embeddings(ds: ImageFolder, cache_dir: Path = CACHE_DIR) -> dict[str, np.ndarray]:
    """ImageNet Lite0 embeddings of every image of ``ds``, from ``cache_dir`` when the same images were
    embedded before (keyed by the data set's fingerprint), else computed (about 10 ms a slice on 2 cores)."""
    key = hashlib.sha256((ds.images_key() + repr(MID_STAGES)).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"imagenet-lite0-{key}.npz"
    if path.exists():
        with np.load(path) as z:
            cached = {k: z[k] for k in z.files}
        if len(cached["final"]) == len(ds):
            return cached
    feats = multiscale_features(imagenet_backbone(), ds.images)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **feats)
    return feats


def _model_key(card: dict) -> str:
    """The weights' version, plus the architecture's arguments where they change the features (the same
    weights with ``mask_background`` give other features)."""
    args = card.get("arch_args") or {}
    if not args.get("mask_background"):
        return card["version"]
    return card["version"] + "-" + hashlib.sha256(repr(sorted(args.items())).encode()).hexdigest()[:8]


def model_features(model: nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The pre-logit features of any shipped slice model (``slice_features``): N x F."""
    from diseaseid.train.mil import slice_embeddings

    return slice_embeddings(model, images, batch_size)


def cached_model_embeddings(ds: ImageFolder, weights: str | Path, cache_dir: Path = CACHE_DIR) -> np.ndarray:
    """:func:`model_features` of the model at ``weights`` for every image of ``ds``, cached by the model's
    version and the data set's fingerprint."""
    from diseaseid.models import load_model

    model, card = load_model(weights)
    path = Path(cache_dir) / f"{card['task']}-{card['arch']}-{_model_key(card)}-{ds.images_key()}.npy"
    if path.exists():
        return np.load(path)
    feats = model_features(model, ds.images)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, feats)
    return feats


PERTURBED_SEEDS = (7, 8, 9)
"""Seeds of the perturbed copies a frozen-feature head may be fitted beside: copy ``i`` is drawn with
``PERTURBED_SEEDS[i]`` (one random realistic acquisition change per slice and copy)."""


def perturbed_key(key: str, copy: int) -> str:
    """The bag key of copy ``copy`` (0-based) of feature ``key``: ``final_aug``, ``final_aug_2``, ..."""
    return f"{key}_aug" + (f"_{copy + 1}" if copy else "")


def cached_perturbed_embeddings(ds: ImageFolder, seed: int = 7, cache_dir: Path = CACHE_DIR) -> np.ndarray:
    """ImageNet Lite0 final embeddings of each slice of ``ds`` under one random realistic acquisition change
    (:func:`diseaseid.robustness.evaluate.perturbed_images`): the augmented copies a frozen-feature head is
    fitted on beside the clean slices. Cached by the images' key and ``seed``."""
    from diseaseid.robustness.evaluate import perturbed_images

    path = Path(cache_dir) / f"imagenet-lite0-perturbed-{ds.images_key()}-{seed}.npy"
    if path.exists():
        return np.load(path)
    feats = multiscale_features(imagenet_backbone(), perturbed_images(ds, seed)[0])["final"]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, feats)
    return feats


def cached_perturbed_model_embeddings(ds: ImageFolder, weights: str | Path, seed: int = 7,
                                      cache_dir: Path = CACHE_DIR) -> np.ndarray:
    """:func:`model_features` of the model at ``weights`` for each slice of ``ds`` under one random realistic
    acquisition change (the same copies as :func:`cached_perturbed_embeddings`), cached by the model's version,
    the images' key and ``seed``."""
    from diseaseid.models import load_model
    from diseaseid.robustness.evaluate import perturbed_images

    model, card = load_model(weights)
    path = Path(cache_dir) / f"{card['task']}-{card['arch']}-{_model_key(card)}-perturbed-{ds.images_key()}-{seed}.npy"
    if path.exists():
        return np.load(path)
    feats = model_features(model, perturbed_images(ds, seed)[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, feats)
    return feats
