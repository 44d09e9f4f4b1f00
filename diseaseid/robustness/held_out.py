"""Robustness of the dementia models on subjects they never saw.

The shipped dementia models are linear heads over frozen features, fitted on all 160 subjects, so every
validation slice is in their training set: answers on seen slices sit far from the decision boundary, and
the share of answers a perturbation changes would look smaller than a new patient's. Here each such model's
head is fitted again by the same recipe (its card's ``training.l2``; the perturbed copies too when the card
says so) on every subject *outside* the robustness sample, and the sample's clean and perturbed slices are
answered by that held-out head on the shipped model's own features. The features and the OOD verdicts are
the shipped model's; only the last linear layer differs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch.nn as nn


@dataclass
class HeldOutHead:
    """A shipped slice model's feature extractor with a linear head fitted without the sample's subjects."""

    model: nn.Module
    weight: np.ndarray  # classes x F
    bias: np.ndarray  # classes
    subjects: int  # how many subjects the head was fitted on

    def labels(self, images: np.ndarray) -> np.ndarray:
        """Labels of ``images`` (N x H x W x 3 uint8, decoded as served)."""
        from diseaseid.train.embeddings import model_features

        return np.argmax(model_features(self.model, images) @ self.weight.T + self.bias, axis=1)


def frozen_head_l2(card: dict) -> float | None:
    """The L2 strength of a card's refitted linear head, or None when the model was trained end to end."""
    l2 = card.get("training", {}).get("l2")
    return float(l2) if l2 is not None else None


def held_out_heads(task: str, roles: tuple[str, ...], sample_files: list[str]) -> dict[str, HeldOutHead]:
    """For each role whose shipped model is a frozen-feature linear head: that head refitted on every subject of
    the task's data set except those of ``sample_files``."""
    from diseaseid.data.dataset import ImageFolder
    from diseaseid.models import load_model
    from diseaseid.paths import task_data_dir, weights_dir
    from diseaseid.tasks import get_task
    from diseaseid.train.embeddings import cached_model_embeddings, cached_perturbed_model_embeddings
    from diseaseid.train.subject_heads import LinearHead

    t = get_task(task)
    ds = ImageFolder.scan(task_data_dir(t), t)
    position = {f: i for i, f in enumerate(ds.files)}
    held = {ds.subjects[position[f]] for f in sample_files}
    if None in held:
        raise ValueError("held-out heads need a subject for every sample slice")
    train = np.array([s not in held for s in ds.subjects])
    heads = {}
    for role in roles:
        path = weights_dir() / task / f"{role}.safetensors"
        model, card = load_model(path)
        l2 = frozen_head_l2(card)
        if l2 is None:
            continue
        x = cached_model_embeddings(ds, path)[train]
        y = ds.labels[train]
        if "acquisition change" in card["training"].get("recipe", ""):  # fitted beside perturbed copies
            x = np.concatenate([x, cached_perturbed_model_embeddings(ds, path)[train]])
            y = np.concatenate([y, y])
        fit = LinearHead(l2=l2).fit(x, y)
        heads[role] = HeldOutHead(model.eval(), fit.weight, fit.bias, len({s for s, k in zip(ds.subjects, train)
                                                                            if k}))
    return heads
