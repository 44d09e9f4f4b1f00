"""Distillation loss, temperature scaling, metrics, a one-epoch CLI run, and a resumable 2-trial search."""
from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest
import torch
import torch.nn.functional as F

from diseaseid.cli import main
from diseaseid.train.calibration import calibration_summary, fit_temperature
from diseaseid.train.distill import distillation_loss
from diseaseid.train.metrics import classification_report, expected_calibration_error, softmax, subject_report


def test_kd_loss_matches_hand_computation():
    s = torch.tensor([[1.0, 2.0, 0.5, -1.0]])
    t = torch.tensor([[0.0, 3.0, 1.0, 0.0]])
    y = torch.tensor([1])
    T, ws, wc = 2.0, 0.7, 0.3
    ps = [math.exp(v / T) for v in s[0].tolist()]
    pt = [math.exp(v / T) for v in t[0].tolist()]
    ps = [v / sum(ps) for v in ps]
    pt = [v / sum(pt) for v in pt]
    kl = sum(q * math.log(q / p) for p, q in zip(ps, pt))
    e = [math.exp(v) for v in s[0].tolist()]
    ce = -math.log(e[1] / sum(e))
    expected = ws * T * T * kl + wc * ce
    got = distillation_loss(s, t, y, temperature=T, w_soft=ws, w_ce=wc)
    assert abs(float(got) - expected) < 1e-6


def test_kd_gradient_reaches_only_the_student():
    student = torch.nn.Linear(5, 4)
    teacher = torch.nn.Linear(5, 4)
    x = torch.randn(8, 5)
    loss = distillation_loss(student(x), teacher(x), torch.randint(0, 4, (8,)))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_temperature_scaling_fixes_overconfidence():
    rng = np.random.default_rng(0)
    n, k = 4000, 4
    labels = rng.integers(0, k, n)
    clean = rng.normal(0, 1, (n, k))
    clean[np.arange(n), labels] += 1.5  # a decent classifier ...
    logits = clean * 4.0  # ... made badly over-confident
    t = fit_temperature(logits, labels)
    assert 2.0 < t < 6.0
    nll_before = F.cross_entropy(torch.tensor(logits), torch.tensor(labels)).item()
    nll_after = F.cross_entropy(torch.tensor(logits / t), torch.tensor(labels)).item()
    assert nll_after < nll_before * 0.8
    summary = calibration_summary(logits, labels)
    assert summary["ece_after"] < summary["ece_before"] and summary["ece_after"] < 0.03


def test_metrics_and_subject_aggregation():
    probs = softmax(np.array([[3.0, 0, 0, 0], [0, 3, 0, 0], [0, 3, 0, 0], [0, 0, 0, 3], [3, 0, 0, 0]]))
    labels = np.array([0, 1, 0, 3, 0])
    rep = classification_report(probs, labels, ["a", "b", "c", "d"])
    assert rep["accuracy"] == pytest.approx(0.8)
    assert rep["classes_absent"] == ["c"]
    assert rep["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    subj = subject_report(probs, labels, ["s1", "s1", "s2", "s3", "s2"], ["a", "b", "c", "d"])
    assert subj["n_subjects"] == 3
    assert 0 <= expected_calibration_error(probs, labels) <= 1


@pytest.mark.slow
def test_one_epoch_train_then_evaluate(tmp_path, fixtures_dir, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", "dementia", "--model", "convnet2", "--widths", "8,8,8",
                 "--data", str(fixtures_dir / "dementia"), "--split", str(tmp_path / "split.json"),
                 "--epochs", "1", "--batch-size", "8", "--out", str(out), "--quiet",
                 "--select", "subject_balanced_accuracy"]) == 0
    card = json.loads((out / "student.json").read_text())
    assert card["arch"] == "convnet2" and card["arch_args"]["widths"] == [8, 8, 8]
    assert "subject_balanced_accuracy" in card["metrics"]["validation"]
    assert card["calibration"]["temperature"] > 0 and "threshold" in card["ood"]
    assert (out / "student-curve.png").stat().st_size > 1000
    assert (out / "student-confusion.png").stat().st_size > 1000
    split = json.loads((tmp_path / "split.json").read_text())
    report_path = tmp_path / "report.json"
    assert main(["evaluate", "--task", "dementia", "--weights", str(out / "student.safetensors"),
                 "--data", str(fixtures_dir / "dementia"), "--out", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    n = len(split["train"]) + len(split["val"])
    assert report["n"] == n and len(report["predictions"]) == n
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "ece", "per_class", "confusion_matrix",
                "subject_accuracy", "subject_balanced_accuracy"):
        assert key in report
    assert main(["predict", str(next((fixtures_dir / "dementia" / "MildDemented").glob("*.jpg"))),
                 "--task", "dementia", "--weights", str(out / "student.safetensors")]) == 0
    assert "%" in capsys.readouterr().out


@pytest.mark.slow
def test_search_writes_and_resumes_its_storage(tmp_path, fixtures_dir):
    out = tmp_path / "search"
    args = ["search", "--task", "tumor", "--model", "convnet2", "--data", str(fixtures_dir / "tumor"),
            "--trials", "1", "--epochs", "1,1", "--out", str(out), "--study-name", "t"]
    assert main(args) == 0
    assert main(args) == 0  # a second run resumes the same study
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{out / 't.db'}")
    assert len(study.trials) == 2
    assert isinstance(study.sampler, optuna.samplers.BaseSampler)
    assert (out / "trials.csv").exists() and (out / "best.json").exists() and (out / "history.png").exists()
    best = json.loads((out / "best.json").read_text())
    assert {"lr", "weight_decay", "dropout", "label_smoothing", "epochs", "batch_size", "width0"} <= set(best["params"])


def test_training_can_start_from_saved_weights(tmp_path, fixtures_dir):
    """``--init`` loads a saved model first (with lr 0 its weights come out unchanged), records where it
    started (and which teacher) in the card, and refuses weights of another architecture."""
    from safetensors.torch import load_file

    base = ["train", "--task", "dementia", "--model", "convnet2", "--data", str(fixtures_dir / "dementia"),
            "--split", str(tmp_path / "split.json"), "--epochs", "1", "--batch-size", "8", "--quiet"]
    common = [*base, "--widths", "8,8,8"]
    assert main([*common, "--out", str(tmp_path / "a")]) == 0
    first = tmp_path / "a" / "student.safetensors"
    assert main([*common, "--out", str(tmp_path / "b"), "--init", str(first), "--lr", "0",
                 "--teacher", str(first)]) == 0
    a, b = load_file(str(first)), load_file(str(tmp_path / "b" / "student.safetensors"))
    assert torch.equal(a["features.0.0.weight"], b["features.0.0.weight"])
    assert torch.equal(a["classifier.weight"], b["classifier.weight"])
    card = json.loads((tmp_path / "b" / "student.json").read_text())
    first_version = json.loads((tmp_path / "a" / "student.json").read_text())["version"]
    # Both the starting weights and the teacher are recorded by version: their files may be replaced later.
    assert card["training"]["init_from"]["version"] == first_version
    assert card["training"]["teacher_from"]["version"] == first_version
    with pytest.raises(ValueError, match="shape"):
        main([*base, "--widths", "8,8,16", "--out", str(tmp_path / "c"), "--init", str(first)])
