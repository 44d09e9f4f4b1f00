"""The uniform model soup (``diseaseid average --weights``): which models may be averaged, that the soup's
weights are the mean of theirs with BN statistics re-estimated, that its reported figures are its own, and
that shipping it leaves no plot of the model it replaced."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diseaseid.cli import main
from diseaseid.models import load_model
from diseaseid.train.averaging import soup_problem, soup_run
from diseaseid.train.data import load_task_data
from diseaseid.train.pipeline import package, ship
from diseaseid.train.trainer import evaluate_logits, predict_logits


@pytest.fixture(scope="module")
def runs(tmp_path_factory, fixtures_dir):
    """A base model, and three one-epoch runs from it: two with the same seed (learning rates 1e-3 and 3e-3),
    one with another seed."""
    tmp = tmp_path_factory.mktemp("soup")
    split = tmp / "split.json"
    base = ["train", "--task", "dementia", "--model", "convnet2", "--widths", "8,8,8",
            "--data", str(fixtures_dir / "dementia"), "--split", str(split), "--epochs", "1",
            "--batch-size", "8", "--quiet"]
    assert main([*base, "--out", str(tmp / "base")]) == 0
    start = str(tmp / "base" / "student.safetensors")
    for name, extra in (("lr1", ["--lr", "1e-3"]), ("lr3", ["--lr", "3e-3"]), ("seed1", ["--seed", "1"])):
        assert main([*base, "--init", start, "--out", str(tmp / name), *extra]) == 0
    return tmp, split


def _card(path):
    return json.loads(path.with_suffix(".json").read_text())


def test_soup_problem_names_what_the_models_do_not_share(runs):
    tmp, _ = runs
    lr1, lr3, seed1, base = (_card(tmp / n / "student.safetensors") for n in ("lr1", "lr3", "seed1", "base"))
    assert soup_problem([lr1, lr3]) is None
    assert "at least two" in soup_problem([lr1])
    assert "starting point" in soup_problem([lr1, seed1])  # same --init, another seed
    assert "starting point" in soup_problem([lr1, base])  # base started from the default initialisation
    assert "not fine-tuned" in soup_problem([base, dict(base)])
    other_arch = {**lr3, "arch_args": {"widths": [8, 8, 16]}}
    assert "architecture" in soup_problem([lr1, other_arch])
    assert "classes" in soup_problem([lr1, {**lr3, "classes": list(reversed(lr3["classes"]))}])
    assert "task" in soup_problem([lr1, {**lr3, "task": "tumor"}])


def test_soup_is_the_mean_of_its_ingredients_with_its_own_bn_statistics(runs, fixtures_dir):
    tmp, split = runs
    train, val, _ = load_task_data("dementia", fixtures_dir / "dementia", split)
    paths = [tmp / "lr1" / "student.safetensors", tmp / "lr3" / "student.safetensors"]
    result, cfg = soup_run(paths, train, val, bn_images=len(train))
    a, b = (load_file(str(p)) for p in paths)
    state = result.model.state_dict()
    for key, value in state.items():
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        assert torch.allclose(value, (a[key].float() + b[key].float()) / 2, atol=1e-6), key
    bn = next(k for k in state if k.endswith("running_mean"))
    assert not torch.allclose(state[bn], (a[bn].float() + b[bn].float()) / 2, atol=1e-4)
    # the reported figures are the soup's own, computed again here from its weights
    logits = predict_logits(result.model, val.images)
    assert np.allclose(result.val_logits, logits, atol=1e-5)
    assert result.best["accuracy"] == evaluate_logits(logits, val)["accuracy"]
    assert [m["version"] for m in cfg.extra["soup_of"]] == [_card(p)["version"] for p in paths]
    assert cfg.lr == pytest.approx(1e-3) and result.history == []
    with pytest.raises(ValueError, match="starting point"):
        soup_run([paths[0], tmp / "seed1" / "student.safetensors"], train, val)


def test_shipping_a_soup_keeps_no_plot_of_the_model_it_replaced(runs, fixtures_dir, tmp_path, monkeypatch):
    tmp, split = runs
    train, val, split_dict = load_task_data("dementia", fixtures_dir / "dementia", split)
    paths = [tmp / "lr1" / "student.safetensors", tmp / "lr3" / "student.safetensors"]
    result, cfg = soup_run(paths, train, val, bn_images=len(train))
    stem = package(result, cfg, train, val, split_dict, tmp_path / "soup", role="student", split_path=split)
    assert not (tmp_path / "soup" / "student-curve.png").exists()
    assert (tmp_path / "soup" / "student-confusion.png").exists()
    weights = tmp_path / "weights"
    (weights / "dementia").mkdir(parents=True)
    (weights / "dementia" / "student-curve.png").write_bytes(b"the replaced model's curve")
    monkeypatch.setenv("DISEASEID_WEIGHTS", str(weights))
    shipped = ship(stem, "dementia", "student")
    assert not (weights / "dementia" / "student-curve.png").exists()
    assert (weights / "dementia" / "student-confusion.png").exists()
    model, card = load_model(shipped)
    assert card["role"] == "student" and [m["file"] for m in card["training"]["extra"]["soup_of"]] == [
        str(p) for p in paths]
    assert card["metrics"]["validation"]["accuracy"] == result.best["accuracy"]


def test_average_command_refuses_weights_of_another_task(runs):
    tmp, _ = runs
    with pytest.raises(SystemExit, match="not tumor"):
        main(["average", "--task", "tumor", "--weights", str(tmp / "lr1" / "student.safetensors"),
              str(tmp / "lr3" / "student.safetensors"), "--out", str(tmp / "never")])
