"""Deletion and insertion curves: right endpoints, and a map that points at the evidence beats a random
one."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from diseaseid.explain.faithfulness import Curves, Evaluation, blurred, perturbation_curves, ranking


class Quadrant(nn.Module):
    """Class 0's logit is the contrast (variance) of the top-left quadrant: only those pixels are evidence,
    and both blurring (insertion's start) and blackening (deletion's end) remove it."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        contrast = x[:, :, :112, :112].flatten(1).var(1)
        return torch.stack([self.scale * contrast, torch.full_like(contrast, 4.0)], 1)


def checkerboards(n: int) -> np.ndarray:
    board = (np.indices((224, 224)).sum(0) % 2 * 255).astype(np.uint8)
    return np.repeat(np.repeat(board[None, :, :, None], 3, 3), n, 0)


def test_ranking_orders_by_value_and_breaks_ties_at_random():
    sal = np.array([[0.1, 0.9], [0.5, 0.5]])
    rank = ranking(sal, np.random.default_rng(0))
    assert rank[0, 1] == 0 and rank[0, 0] == 3 and {rank[1, 0], rank[1, 1]} == {1, 2}


def test_ranking_by_squares():
    sal = np.zeros((4, 4))
    sal[2:, 2:] = 5.0  # the best square
    sal[0, 0] = 1.0  # one pixel lifts the top-left square above the other two
    rank = ranking(sal, np.random.default_rng(0), patch=2)
    assert sorted(rank[2:, 2:].ravel()) == [0, 1, 2, 3]
    assert sorted(rank[:2, :2].ravel()) == [4, 5, 6, 7]
    assert sorted(rank.ravel()) == list(range(16))


def test_curve_endpoints_and_area():
    model = Quadrant().eval()
    images = checkerboards(2)
    curves = perturbation_curves(model, images, np.random.default_rng(0).random((2, 224, 224)),
                                 np.array([0, 0]), steps=4)
    full = torch.softmax(model(torch.from_numpy(np.zeros((1, 3, 224, 224), np.float32))), 1)
    assert curves.deletion.shape == (2, 5) and curves.fractions.tolist() == [0, 0.25, 0.5, 0.75, 1]
    # nothing removed: the original probability; everything restored: the same
    assert np.allclose(curves.deletion[:, 0], curves.insertion[:, -1])
    assert curves.deletion[0, -1] < curves.deletion[0, 0]
    assert np.allclose(Curves.area(np.ones((1, 5)), curves.fractions), 1.0)
    assert full.shape == (1, 2)


def test_a_map_on_the_evidence_beats_random():
    model = Quadrant().eval()
    images = checkerboards(3)
    targets = np.zeros(3, np.int64)
    right = np.zeros((3, 224, 224), np.float32)
    right[:, :112, :112] = 1.0
    random = np.random.default_rng(2).random((3, 224, 224)).astype(np.float32)
    good = perturbation_curves(model, images, right, targets, steps=8).summary()
    bad = perturbation_curves(model, images, random, targets, steps=8).summary()
    assert good["deletion_auc"] < bad["deletion_auc"] - 0.2
    assert good["insertion_auc"] > bad["insertion_auc"] + 0.2


def test_blur_and_report(tmp_path):
    img = np.zeros((224, 224, 3), np.uint8)
    img[100:124, 100:124] = 255
    b = blurred(img)
    assert b.shape == img.shape and b.max() < 255 and b[97, 110].sum() > 0
    ev = Evaluation("tumor", "tumor/student:convnet1", 3, 4, "epsilon_gamma_box")
    ev.results["lrp"] = {"deletion_auc": 0.2, "deletion_sem": 0.01, "insertion_auc": 0.6,
                         "insertion_sem": 0.02, "deletion_curve": [1, 0.5, 0.2, 0.1, 0.1],
                         "insertion_curve": [0.1, 0.5, 0.8, 0.9, 1]}
    assert "| lrp | 0.200 +- 0.010 | 0.600 +- 0.020 | +0.400 |" in ev.markdown()
    ev.plot(tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000
