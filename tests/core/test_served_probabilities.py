"""Served probabilities are the calibrated ones: softmax(logits / T) with the temperature of the model's card.

Computed from the model's own logits, never from numbers copied out of a card: the shipped weights may be
replaced."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diseaseid.data.dataset import ImageFolder
from diseaseid.serving import Predictor
from diseaseid.tasks import get_task

LOGITS = torch.tensor([[2.0, -1.0, 0.5, 1.5], [0.0, 4.0, -2.0, 1.0], [3.0, 3.0, -1.0, -3.0]])


class FixedLogits(torch.nn.Module):
    """Answers the given logits row by row, whatever the image (the OOD detector is not what is tested)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.rows = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rows[: x.shape[0]].clone()


@pytest.mark.parametrize("temperature", [0.5, 2.5])
def test_probabilities_are_softmax_of_logits_over_the_card_temperature(temperature):
    task = get_task("tumor")
    card = {"task": "tumor", "arch": "fixed", "calibration": {"temperature": temperature}}
    predictor = Predictor(FixedLogits(LOGITS), card)
    images = np.full((3, 224, 224, 3), 100, np.uint8)
    got = np.array([[p.probabilities[c] for c in task.classes] for p in predictor.predict(images)])
    expected = torch.softmax(LOGITS / temperature, dim=1).numpy()
    uncalibrated = torch.softmax(LOGITS, dim=1).numpy()
    assert np.abs(expected - uncalibrated).max() > 0.05  # the temperature matters for these logits
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # a one-image (H x W x 3) call is calibrated the same way
    one = predictor.predict(images[0])[0]
    np.testing.assert_allclose([one.probabilities[c] for c in task.classes], expected[0], rtol=1e-5, atol=1e-6)


def test_a_card_without_calibration_serves_plain_softmax():
    predictor = Predictor(FixedLogits(LOGITS), {"task": "tumor", "arch": "fixed"})
    got = [p.probabilities for p in predictor.predict(np.zeros((3, 224, 224, 3), np.uint8))]
    expected = torch.softmax(LOGITS, dim=1).numpy()
    np.testing.assert_allclose([list(g.values()) for g in got], expected, rtol=1e-5, atol=1e-6)


def test_shipped_student_serves_its_cards_temperature(fixtures_dir, shipped):
    predictor = shipped("tumor", "student")
    temperature = float(predictor.card["calibration"]["temperature"])
    images = ImageFolder.scan(fixtures_dir / "tumor", get_task("tumor"), per_class=1).images
    logits = predictor.logits(images)
    expected = torch.softmax(logits / temperature, dim=1).numpy()
    got = np.array([list(p.probabilities.values()) for p in predictor.predict(images)])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
