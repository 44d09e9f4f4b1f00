"""The dementia study head over a chosen slice model (``ship-dementia --study-backbone``): ``slice-linear`` is that
model's own classifier read over the slices, its card names that model by hash, and serving binds it to the
shipped model and answers the geometric mean of the slices' probabilities."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from diseaseid.robustness.evaluate import decode
from diseaseid.robustness.studies import series_logits, subject_answer
from tests.conftest import FIXTURES


def _fake_cv(n: int = 20, seed: int = 0):
    from diseaseid.tasks import get_task

    rng = np.random.default_rng(seed)
    labels = np.tile(np.arange(4), n // 4)
    result = {"balanced_accuracy_3": {"mean": 0.4}, "oof_probabilities": rng.dirichlet(np.ones(4), size=n),
              "folds": 5, "repeats": 3, "subjects": n, "seed": 0}
    ds = SimpleNamespace(task=get_task("dementia"), fingerprint=lambda: "fingerprint")
    bags = SimpleNamespace(bags=[{} for _ in range(n)], labels=labels, subjects=[f"s{i}" for i in range(n)])
    return ds, bags, result


def test_slice_linear_over_the_student_is_its_classifier_bound_to_the_shipped_student(tmp_path):
    from diseaseid.models import load_model
    from diseaseid.serving.predictor import Predictor, shipped_weights
    from diseaseid.serving.study import StudyModel
    from diseaseid.train.calibration import fit_temperature
    from diseaseid.train.dementia_models import fit_study_head

    path = shipped_weights("dementia", "student")
    student, card = load_model(path)
    ds, bags, result = _fake_cv()
    out = fit_study_head(ds, bags, tmp_path, "slice-linear", student.eval(), path, result)
    head, head_card = load_model(out)
    assert torch.equal(head.linear.weight, student.classifier.weight)
    assert torch.equal(head.linear.bias, student.classifier.bias)
    assert head_card["arch_args"] == {"in_features": student.classifier.in_features, "slabs": 1, "kind": "slices"}
    assert head_card["backbone"] == {"file": "student.safetensors", "version": card["version"],
                                     "sha256": card["weights_sha256"]}
    assert head_card["training"]["recipe"].startswith("the student's slice classifier (")
    assert "--study-backbone student" in head_card["command"]
    assert head_card["training"]["l2"] == card["training"]["l2"] == 1000.0  # the student's own fit
    assert head_card["calibration"]["temperature"] == pytest.approx(
        fit_temperature(np.log(np.clip(result["oof_probabilities"], 1e-9, 1)), bags.labels))

    # served: bound to the shipped student without a mismatch, the subject's class is the geometric mean's
    student_predictor = Predictor.from_shipped("dementia", "student")
    study = StudyModel.from_weights(out, student_predictor)
    w = student.classifier.weight.detach().numpy()
    b = student.classifier.bias.detach().numpy()
    answers = []
    for subject in ("MildDemented-002", "NonDemented-003", "VeryMildDemented-004"):
        images = np.stack([decode(np.asarray(Image.open(p).convert("L")))
                           for p in sorted((FIXTURES / "dementia").glob(f"*/{subject}_*.jpg"))])
        logits, flags = series_logits(student_predictor, w, b, images)
        expected = subject_answer(logits, ~flags, "mil")
        assert int(np.argmax(study.predict(images).probabilities)) == expected, subject
        answers.append(expected)
    # the teacher is not what the head reads: binding it there is refused
    from diseaseid.serving.study import BackboneMismatch

    with pytest.raises(BackboneMismatch):
        StudyModel.from_weights(out, Predictor.from_shipped("dementia", "teacher"))


def test_pooled_heads_other_than_slice_linear_read_the_teacher_only(tmp_path):
    from diseaseid.models import load_model
    from diseaseid.serving.predictor import shipped_weights
    from diseaseid.train.dementia_models import fit_dementia_models, fit_study_head

    path = shipped_weights("dementia", "student")
    student, _ = load_model(path)
    ds, bags, result = _fake_cv()
    with pytest.raises(ValueError, match="reads the teacher's embeddings"):
        fit_study_head(ds, bags, tmp_path, "mean-linear", student.eval(), path, result)
    with pytest.raises(ValueError, match="study_backbone must be one of"):
        fit_dementia_models(tmp_path, study_backbone="mil")
