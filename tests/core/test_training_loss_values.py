"""The loss ``fit`` minimises, by value, without training (issue 17): ``batch_loss`` is the label-smoothed
cross-entropy of the configuration, or Hinton's distillation loss with the configuration's T, weights and
smoothing when a teacher speaks; ``loss_class_weights`` are the inverse class frequencies (mean 1)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diseaseid.train.config import TrainConfig
from diseaseid.train.trainer import batch_loss, loss_class_weights
from tests.core.test_loss_values import TEACH, S, Y, _hand_kd, _softmax


def hand_smoothed_ce(eps: float) -> float:
    k = len(S[0])
    total = 0.0
    for s, y in zip(S, Y):
        logp = [math.log(p) for p in _softmax(s)]
        total += -sum(((1 - eps) * (c == y) + eps / k) * logp[c] for c in range(k))
    return total / len(S)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_without_a_teacher_the_loss_is_the_label_smoothed_cross_entropy(eps):
    cfg = TrainConfig(label_smoothing=eps)
    got = batch_loss(cfg, torch.tensor(S), torch.tensor(Y), None, None)
    assert float(got) == pytest.approx(hand_smoothed_ce(eps), rel=1e-6)
    assert got.dtype == torch.float32
    half = batch_loss(cfg, torch.tensor(S, dtype=torch.bfloat16), torch.tensor(Y), None, None)
    assert half.dtype == torch.float32  # computed in float32 whatever the autocast dtype of the logits


def test_with_a_teacher_the_loss_is_hintons_with_the_configuration():
    cfg = TrainConfig(kd_temperature=2.5, w_soft=0.35, w_ce=0.65, label_smoothing=0.2)
    got = batch_loss(cfg, torch.tensor(S), torch.tensor(Y), torch.tensor(TEACH), None)
    assert float(got) == pytest.approx(_hand_kd(2.5, 0.35, 0.65, 0.2), rel=1e-6)
    plain = batch_loss(TrainConfig(label_smoothing=0.2), torch.tensor(S), torch.tensor(Y), None, None)
    assert float(got) != pytest.approx(float(plain), rel=1e-3)


def test_class_weights_reach_both_losses():
    w = torch.tensor([0.5, 2.0, 1.0, 3.0])
    cfg = TrainConfig(label_smoothing=0.0, kd_temperature=2.0, w_soft=0.7, w_ce=0.3)
    got = batch_loss(cfg, torch.tensor(S), torch.tensor(Y), None, w)
    assert float(got) == pytest.approx(_hand_kd(1.0, 0.0, 1.0, 0.0, w.tolist()), rel=1e-6)
    kd = batch_loss(cfg, torch.tensor(S), torch.tensor(Y), torch.tensor(TEACH), w)
    assert float(kd) == pytest.approx(_hand_kd(2.0, 0.7, 0.3, 0.0, w.tolist()), rel=1e-6)
    smoothed = batch_loss(TrainConfig(label_smoothing=0.1), torch.tensor(S), torch.tensor(Y), None, w)
    want = F.cross_entropy(torch.tensor(S), torch.tensor(Y), weight=w, label_smoothing=0.1)
    assert float(smoothed) == pytest.approx(float(want), rel=1e-6)


def test_loss_class_weights_are_inverse_frequencies():
    labels = np.array([0] * 6 + [1] * 2 + [3] * 4)
    assert loss_class_weights(TrainConfig(balanced=False), labels, 4, torch.device("cpu")) is None
    w = loss_class_weights(TrainConfig(balanced=True), labels, 4, torch.device("cpu"))
    # 12 images over 4 classes: 12 / count / 4; an absent class weighs 0
    assert w.dtype == torch.float32 and w.device == torch.device("cpu")
    assert w.tolist() == pytest.approx([0.5, 1.5, 0.0, 0.75])
    five = loss_class_weights(TrainConfig(balanced=True), np.array([0, 1, 1]), 5, torch.device("cpu"))
    assert five.tolist() == pytest.approx([3 / 1 / 5, 3 / 2 / 5, 0.0, 0.0, 0.0])
