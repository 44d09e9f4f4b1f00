"""The subject-level attention-MIL head: masks, attention, and learning a position-dependent signal."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diseaseid.models import create_model
from diseaseid.train.mil import train_mil


def test_attention_is_a_distribution_over_real_slices():
    model = create_model("attention_mil", in_features=16, hidden=8).eval()
    feats, pos = torch.randn(2, 5, 16), torch.rand(2, 5)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    logits, attn = model(feats, pos, mask, return_attention=True)
    assert logits.shape == (2, 4)
    assert torch.allclose(attn.sum(1), torch.ones(2))
    assert (attn[1, 3:] == 0).all()
    # padding must not change a bag's prediction
    alone = model(feats[1:, :3], pos[1:, :3])
    assert torch.allclose(alone, logits[1:], atol=1e-5)


def test_learns_a_signal_that_lives_in_a_few_slices():
    rng = np.random.default_rng(0)

    def bags(n):
        out = {}
        for i in range(n):
            y = i % 4
            f = rng.normal(0, 1, (12, 16)).astype(np.float32)
            f[8:, y] += 2.0  # only the upper slices carry the class
            out[f"s{i}"] = (f, np.linspace(0, 1, 12, dtype=np.float32), y)
        return out

    model, best, history = train_mil(bags(80), bags(40), ["a", "b", "c", "d"], epochs=150, hidden=16,
                                     dropout=0.1, slice_dropout=0.1)
    assert best["balanced_accuracy"] >= 0.9
    assert history[-1]["epoch"] == 150


def test_class_weighting_modes():
    from diseaseid.train.mil import class_weights

    y = torch.tensor([0] * 8 + [1] * 2)
    balanced = class_weights(y, 3, "balanced")
    assert balanced.tolist() == pytest.approx([10 / 24, 10 / 6, 0.0])
    assert class_weights(y, 3, "sqrt").tolist() == pytest.approx(balanced.sqrt().tolist())
    assert class_weights(y, 3, "none") is None
    with pytest.raises(ValueError):
        class_weights(y, 3, "bogus")


def test_shipped_study_model_binds_to_its_backbone_and_reads_slices_in_order(shipped):
    from diseaseid.serving import BackboneMismatch, StudyModel, shipped_mil
    from diseaseid.serving.study import study_backbone_role

    role = study_backbone_role("dementia")
    study = StudyModel.from_shipped("dementia", shipped("dementia", role))
    assert shipped_mil("dementia") is not None and shipped_mil("tumor") is None
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (4, 224, 224, 3), dtype=np.uint8)
    result = study.predict(images)
    assert result.probabilities.shape == (4,) and abs(result.probabilities.sum() - 1) < 1e-5
    assert result.attention.shape == (4,) and abs(result.attention.sum() - 1) < 1e-5
    # Embeddings are the backbone's pooled features, one per slice, independent of the batch. In float32 a batch
    # of 4 and a batch of 1 may take other kernels, which round differently by CPU (8.5e-4 relative on an Intel
    # Xeon with AMX); mixing slices (BatchNorm in training mode) moves them by far more.
    together, alone = study.embed(images)[1:2], study.embed(images[1:2])
    assert float((together - alone).norm() / alone.norm()) <= 1e-2
    with pytest.raises(ValueError, match="at least one slice"):
        study.predict(images[:0])
    # A head refuses a slice model it was not trained on (the other one here).
    other = shipped("dementia", "teacher" if role == "student" else "student")
    with pytest.raises(BackboneMismatch, match="train-mil"):
        StudyModel(study.head, study.card, other)
