"""Training settings that cannot make a sensible run are refused before the run starts, each with its reason."""
from __future__ import annotations

import pytest

from diseaseid.cli import main
from diseaseid.train.config import TrainConfig


def test_the_defaults_have_no_problem():
    assert TrainConfig().problems() == []
    assert TrainConfig(model="convnet1", input_pool=2, aug_scan_p=1.0, aug_noise_p=0.0).problems() == []


@pytest.mark.parametrize(("settings", "message"), [
    ({"aug_scan_p": 1.5}, "--aug-scan-p must lie in [0, 1], not 1.5"),
    ({"aug_noise_p": -0.1}, "--aug-noise-p must lie in [0, 1], not -0.1"),
    ({"aug_blur": 1.0}, "--aug-blur must lie in [0, 1), not 1"),
    ({"epochs": 0}, "--epochs must be at least 1, not 0"),
    ({"batch_size": 0}, "--batch-size must be at least 1, not 0"),
    ({"aug_scan_copies": 0}, "--aug-scan-copies must be at least 1, not 0"),
    ({"input_pool": 0}, "--input-pool must be at least 1, not 0"),
    ({"aug_scan_noise": -4.0}, "--aug-scan-noise must not be negative, not -4"),
    ({"consistency": -1.0}, "--consistency must not be negative, not -1"),
    ({"lr": -1e-3}, "--lr must not be negative, not -0.001"),
    ({"model": "lite0", "input_pool": 2}, "--input-pool pools a convnet's input, not lite0's"),
    ({"model": "convnet1", "input_median": True}, "--input-median filters a Lite0's stem"),
])
def test_each_problem_is_named(settings, message):
    problems = TrainConfig(**settings).problems()
    assert len(problems) == 1 and problems[0].startswith(message)


def test_every_problem_is_reported_at_once():
    assert len(TrainConfig(aug_scan_p=2.0, epochs=0, lr=-1.0).problems()) == 3


def test_a_zero_learning_rate_is_allowed():  # it packages --init's weights unchanged (test_training)
    assert TrainConfig(lr=0.0).problems() == []


def test_the_command_refuses_before_reading_any_data(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        main(["train", "--task", "tumor", "--aug-scan-p", "1.5", "--input-pool", "0", "--data",
              str(tmp_path / "missing"), "--out", str(out)])
    assert str(exc.value) == ("train: --aug-scan-p must lie in [0, 1], not 1.5; "
                              "--input-pool must be at least 1, not 0")
    assert not out.exists()
