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


def perturbed_copies(card: dict) -> int:
    """How many perturbed copies of every slice a card's head was fitted beside (cards written before the count
    was recorded name one copy in their recipe)."""
    training = card.get("training", {})
    if "perturbed_copies" in training:
        return int(training["perturbed_copies"])
    return 1 if "acquisition change" in training.get("recipe", "") else 0


def held_out_heads(task: str, roles: tuple[str, ...], sample_files: list[str]) -> dict[str, HeldOutHead]:
    """For each role whose shipped model is a frozen-feature linear head: that head refitted on every subject of
    the task's data set except those of ``sample_files``."""
    return held_out_heads_per_group(task, roles, [sample_files])[0]


def held_out_heads_per_group(task: str, roles: tuple[str, ...], groups: list[list[str]]
                             ) -> list[dict[str, HeldOutHead]]:
    """:func:`held_out_heads` for each group of held-out files (the folds of a cross-fitting), each model and its
    cached embeddings loaded once for all groups."""
    from diseaseid.data.dataset import ImageFolder
    from diseaseid.models import load_model
    from diseaseid.paths import task_data_dir, weights_dir
    from diseaseid.tasks import get_task
    from diseaseid.train.embeddings import PERTURBED_SEEDS, cached_model_embeddings, cached_perturbed_model_embeddings
    from diseaseid.train.subject_heads import LinearHead

    t = get_task(task)
    ds = ImageFolder.scan(task_data_dir(t), t)
    position = {f: i for i, f in enumerate(ds.files)}
    trains = []
    for files in groups:
        held = {ds.subjects[position[f]] for f in files}
        if None in held:
            raise ValueError("held-out heads need a subject for every sample slice")
        trains.append(np.array([s not in held for s in ds.subjects]))
    out: list[dict[str, HeldOutHead]] = [{} for _ in groups]
    for role in roles:
        path = weights_dir() / task / f"{role}.safetensors"
        model, card = load_model(path)
        l2 = frozen_head_l2(card)
        if l2 is None:
            continue
        copies = perturbed_copies(card)
        x = [cached_model_embeddings(ds, path)]
        x += [cached_perturbed_model_embeddings(ds, path, seed=PERTURBED_SEEDS[i]) for i in range(copies)]
        for heads, train in zip(out, trains):
            fit = LinearHead(l2=l2).fit(np.concatenate([part[train] for part in x]),
                                        np.tile(ds.labels[train], copies + 1))
            heads[role] = HeldOutHead(model.eval(), fit.weight, fit.bias,
                                      len({s for s, k in zip(ds.subjects, train) if k}))
    return out
