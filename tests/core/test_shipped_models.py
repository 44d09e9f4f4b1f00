"""The committed models: cards complete, calibrated, and the OOD check separating MRI from everything else."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from diseaseid.data.dataset import ImageFolder
from diseaseid.models import load_model
from diseaseid.models.checkpoint import file_sha256
from diseaseid.serving import ROLES, shipped_weights
from diseaseid.tasks import TASKS, get_task

PAIRS = [(t, r) for t in TASKS for r in ROLES]


@pytest.mark.parametrize("task,role", PAIRS)
def test_model_card_is_complete(task, role):
    path = shipped_weights(task, role)
    _, card = load_model(path)
    assert not card.get("placeholder"), "placeholder weights are not to be shipped"
    for key in ("task", "arch", "arch_args", "classes", "parameters", "training", "split", "data_fingerprint",
                "metrics", "calibration", "ood", "date", "git_commit", "weights_sha256"):
        assert key in card, key
    assert card["task"] == task and card["classes"] == list(get_task(task).classes)
    assert card["weights_sha256"] == file_sha256(path)
    assert card["calibration"]["temperature"] > 0
    if role == "student":
        assert card["parameters"] <= 1_000_000


@functools.cache
def calibration_non_mri() -> tuple[list[str], np.ndarray]:
    """The calibration set of non-MRI images, decoded as an upload of each is."""
    from diseaseid.data.preprocess import to_uint8_rgb
    from diseaseid.ood.images import non_mri

    images = non_mri("calibration")
    return list(images), np.stack([to_uint8_rgb(x) for x in images.values()])


@pytest.mark.parametrize("task,role", PAIRS)
def test_ood_flags_non_mri_and_passes_mri(task, role, fixtures_dir, shipped):
    pytest.importorskip("skimage")
    predictor = shipped(task, role)
    names, images = calibration_non_mri()
    flagged = [p.ood for p in predictor.predict(images)]
    assert np.mean(flagged) >= 0.95, [k for k, f in zip(names, flagged) if not f]
    mri = ImageFolder.scan(fixtures_dir / task, get_task(task))
    mri_flags = [p.ood for p in predictor.predict(mri.images)]
    assert np.mean(mri_flags) <= 0.1, [f for f, x in zip(mri.files, mri_flags) if x]


@pytest.mark.parametrize("role", ROLES)
def test_tumor_models_classify_fixture_slices(role, fixtures_dir, shipped):
    """Trained tumor models get nearly all committed sample slices right (a real-weights smoke check)."""
    predictor = shipped("tumor", role)
    ds = ImageFolder.scan(fixtures_dir / "tumor", get_task("tumor"))
    with torch.no_grad():
        preds = np.array([p.label_index for p in predictor.predict(ds.images)])
    assert (preds == ds.labels).mean() >= 0.8
