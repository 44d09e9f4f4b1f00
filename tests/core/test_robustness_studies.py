"""diseaseid.robustness.studies: a series shares its acquisition's draw, subjects and folds are dealt by class,
and a subject's answer is the one serving gives for the same slices (the study head's geometric mean, or the mean
of calibrated probabilities), from the shipped models on the fixture studies."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from diseaseid.robustness.evaluate import decode
from diseaseid.robustness.perturbations import PERTURBATIONS, by_name
from diseaseid.robustness.studies import (
    NO_DIAGNOSIS,
    assign_folds,
    check_study_head,
    choose_subjects,
    series_logits,
    series_rngs,
    subject_answer,
    subject_scores,
)
from tests.conftest import FIXTURES
from tests.core.test_head_crop import phantom


def test_the_acquisition_draws_are_the_series_ones():
    series = {p.family for p in PERTURBATIONS if p.series}
    assert series == {"bias", "shift", "rotate"}


def test_a_series_shares_its_rotation_and_noise_is_drawn_per_slice():
    raw = phantom(208, 176)
    rotate = by_name(["rotate:5 deg"])[0]
    shared = [rotate.apply(raw, rng) for rng in series_rngs(0, 3, 5, 6, series=True)]
    assert all(np.array_equal(shared[0], s) for s in shared[1:])
    # per slice, the direction is drawn anew: among 6 slices both directions occur (seeded, so always)
    own = [rotate.apply(raw, rng) for rng in series_rngs(0, 3, 5, 6, series=False)]
    assert len({o.tobytes() for o in own}) == 2
    noise = by_name(["noise:sigma 8"])[0]
    noisy = [noise.apply(raw, rng) for rng in series_rngs(0, 1, 5, 3, series=False)]
    assert not np.array_equal(noisy[0], noisy[1]) and not np.array_equal(noisy[1], noisy[2])
    # another subject of the same condition draws another stream
    other = [rotate.apply(raw, rng) for rng in series_rngs(0, 3, 6, 1, series=True)]
    first = [rng.random() for rng in series_rngs(0, 3, 5, 1, True) + series_rngs(0, 3, 6, 1, True)]
    assert first[0] != first[1] and other[0].shape == shared[0].shape


def test_subject_answer_is_the_geometric_mean_for_the_study_head_and_the_mean_otherwise():
    # slice 0 is sure of class 0, slices 1 and 2 lean to class 1 without ruling class 0 out the way slice 0
    # rules class 1 out: the arithmetic mean of the probabilities picks 0, the mean of their logs picks 1
    logits = np.log([[0.9, 0.1, 1e-9, 1e-9], [0.1, 0.45, 0.44, 0.01], [0.1, 0.45, 0.44, 0.01]])
    used = np.ones(3, bool)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert np.argmax(p.mean(0)) == 0 and np.argmax(np.log(p).mean(0)) == 1
    assert subject_answer(logits, used, "mil") == 1
    assert subject_answer(logits, used, "mean") == 0
    # a temperature moves the mean of probabilities (the sure slice flattens), not the geometric mean
    assert subject_answer(logits, used, "mean", temperature=100.0) == 1
    assert subject_answer(logits, used, "mil", temperature=100.0) == 1
    # flagged slices do not count; none left: no diagnosis
    assert subject_answer(logits, np.array([True, False, False]), "mil") == 0
    assert subject_answer(logits, np.zeros(3, bool), "mil") == NO_DIAGNOSIS
    with pytest.raises(ValueError, match="mil or mean"):
        subject_answer(logits, used, "max")


def test_subjects_are_chosen_per_class_and_folds_dealt_per_class():
    labels = {f"s{c}-{i}": c for c, n in enumerate((10, 8, 3, 1)) for i in range(n)}
    chosen = choose_subjects(labels, 12, seed=0)
    # 3 each for the four classes (the last has 1), then the 2 left go to the two classes with subjects left
    assert Counter(labels[s] for s in chosen) == {0: 4, 1: 4, 2: 3, 3: 1}
    assert chosen == sorted(chosen) and len(set(chosen)) == 12
    assert choose_subjects(labels, 0) == sorted(labels) == choose_subjects(labels, 99)
    assert choose_subjects(labels, 12, seed=1) != chosen  # seeded, not fixed
    folds = assign_folds(labels, sorted(labels), 4, seed=0)
    for c in range(4):
        per_fold = Counter(folds[s] for s in labels if labels[s] == c)
        assert max(per_fold.values()) - min(per_fold.values(), default=0) <= 1
    assert sorted(Counter(folds.values()).values()) == [5, 5, 6, 6]


def test_subject_scores_count_no_diagnosis_as_a_miss_and_a_change():
    truth = np.array([0, 0, 1, 1, 2])
    clean = np.array([0, 1, 1, 1, 2])
    answers = np.array([0, NO_DIAGNOSIS, 1, 0, 2])
    s = subject_scores(truth, answers, clean)
    assert s["balanced_accuracy"] == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert s["changed"] == pytest.approx(2 / 5) and s["changed_n"] == 2
    assert s["no_diagnosis"] == pytest.approx(1 / 5)
    assert s["answers"] == [0, NO_DIAGNOSIS, 1, 0, 2] and "balanced_accuracy_scored" not in s
    # the cards' 3-class figure: the class of 2 subjects (here class 2) left out of the mean of recalls
    assert subject_scores(truth, answers, None, scored=(0, 1))["balanced_accuracy_scored"] == pytest.approx(0.5)


def _fixture_studies() -> dict[str, np.ndarray]:
    """Subject -> its fixture slices (lowest first), decoded as served."""
    out: dict[str, list] = {}
    for path in sorted((FIXTURES / "dementia").glob("*/*.jpg")):
        subject = path.stem.rsplit("_", 1)[0]
        out.setdefault(subject, []).append(decode(np.asarray(Image.open(path).convert("L"))))
    return {s: np.stack(v) for s, v in out.items()}


def _classifier(role: str) -> tuple[np.ndarray, np.ndarray]:
    from safetensors.numpy import load_file

    from diseaseid.serving.predictor import shipped_weights

    w = load_file(shipped_weights("dementia", role))
    return w["classifier.weight"], w["classifier.bias"]


def test_answers_are_those_served_for_the_same_slices():
    """With the shipped classifiers as the heads, a subject's answer is what /predict/study answers: the study head
    (over the slice model it reads) for ``mil``, the student's mean of calibrated probabilities for ``mean``."""
    from diseaseid.serving.predictor import Predictor
    from diseaseid.serving.study import StudyModel, answer_study, study_backbone_role

    role = study_backbone_role("dementia")
    backbone, student = Predictor.from_shipped("dementia", role), Predictor.from_shipped("dementia", "student")
    study = StudyModel.from_shipped("dementia", backbone)
    studies = _fixture_studies()
    assert len(studies) == 11
    seen = Counter()
    for subject, images in studies.items():
        served = answer_study(backbone, images, study).subject
        logits, flags = series_logits(backbone, *_classifier(role), images)
        answer, labels = subject_answer(logits, ~flags, "mil"), logits.argmax(axis=1)
        assert answer == served.top_index, subject
        assert not flags.any()
        assert list(labels) == [p.top_index for p in answer_study(backbone, images).slices]
        served_mean = answer_study(student, images).subject
        logits, flags = series_logits(student, *_classifier("student"), images)
        assert subject_answer(logits, ~flags, "mean", student.temperature) == served_mean.top_index, subject
        seen[answer] += 1
    assert len(seen) >= 2  # the fixture subjects do not all get one answer: the check has teeth


def test_the_study_head_must_be_the_backbone_classifier():
    from diseaseid.serving.predictor import shipped_weights
    from diseaseid.serving.study import shipped_mil, study_backbone_role

    role = study_backbone_role("dementia")
    check_study_head(shipped_mil("dementia"), shipped_weights("dementia", role))
    with pytest.raises(ValueError, match="not the slice classifier"):
        check_study_head(shipped_mil("dementia"), shipped_weights("dementia", "teacher" if role == "student"
                                                                    else "student"))


def test_a_task_without_a_study_head_is_refused():
    from diseaseid.robustness.studies import evaluate_studies

    with pytest.raises(ValueError, match="tumor task ships no study-level head"):
        evaluate_studies("tumor", 4)


def test_the_study_table_shows_each_reader_s_figures():
    from diseaseid.robustness.report import studies_markdown

    def reader(bal, changed=None, n=None, slices=None):
        subjects = {"balanced_accuracy": bal, "no_diagnosis": 0.0}
        if changed is not None:
            subjects.update(changed=changed, changed_n=n)
        return {"subjects": subjects, "slices": {"flagged": 0.0, **({"changed": slices} if slices is not None else {})}}

    st = {"subjects": 40, "slices": 1280, "folds": 4, "class_counts": {"NonDemented": 20, "MildDemented": 20},
          "readers": {"teacher (study head)": {}, "student (mean of slices)": {}},
          "rows": [{"family": "clean", "level": "none", "realistic": True,
                    "readers": {"teacher (study head)": reader(0.5), "student (mean of slices)": reader(0.45)}},
                   {"family": "gamma", "level": "0.8", "realistic": True,
                    "readers": {"teacher (study head)": reader(0.4, 0.125, 5, 0.3),
                                "student (mean of slices)": reader(0.45, 0.025, 1, 0.04)}}],
          "summary": {"teacher (study head)": {"clean_balanced_accuracy": 0.5, "worst_changed": 0.125,
                                               "worst_changed_at": "gamma:0.8", "over_10_percent": ["gamma:0.8"]},
                      "student (mean of slices)": {"clean_balanced_accuracy": 0.45, "worst_changed": 0.025,
                                                   "worst_changed_at": "gamma:0.8", "over_10_percent": []}}}
    text = "\n".join(studies_markdown(st))
    assert "40 subjects (20 NonDemented, 20 MildDemented; 1280 slices)" in text
    assert "| gamma | 0.8 | 40.0 | 12.5 (5) | 0.0 | 30.0 | 45.0 | 2.5 (1) | 0.0 | 4.0 |" in text
    assert "| clean | none | 50.0 | - | 0.0 | - | 45.0 | - | 0.0 | - |" in text
    assert "teacher (study head): clean 50.0%, most changed 12.5% (gamma:0.8), changes above 10%: gamma:0.8" in text
    assert "student (mean of slices): clean 45.0%, most changed 2.5% (gamma:0.8), changes above 10%: none" in text


def test_no_slices_and_no_studies_is_refused_before_any_work(tmp_path):
    from diseaseid.cli import build_parser

    args = build_parser().parse_args(["robustness", "--task", "dementia", "--n", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--n 0 leaves nothing to measure without --studies"):
        args.func(args)
    assert not (tmp_path / "dementia.json").exists()


def test_the_summary_takes_the_realistic_rows_only():
    """The worst change and the changes above 10% come from the realistic rows (a 10-degree rotation is not);
    the clean figures from the first row."""
    from diseaseid.robustness.studies import summarize

    def row(family, level, changed, realistic=True, bal=0.5):
        subjects = {"balanced_accuracy": bal, "balanced_accuracy_scored": bal + 0.1, "changed": changed}
        return {"family": family, "level": level, "realistic": realistic, "readers": {"r": {"subjects": subjects}}}

    rows = [row("clean", "none", None, bal=0.4), row("gamma", "1.25", 0.15), row("noise", "sigma 4", 0.1),
            row("rotate", "10 deg", 0.45, realistic=False), row("bias", "+-20%", 0.11)]
    assert summarize(rows, ["r"]) == {"r": {
        "clean_balanced_accuracy": 0.4, "clean_balanced_accuracy_scored": pytest.approx(0.5),
        "worst_changed": 0.15, "worst_changed_at": "gamma:1.25", "over_10_percent": ["gamma:1.25", "bias:+-20%"]}}


def _merge_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "merge_study_rows.py"
    spec = importlib.util.spec_from_file_location("merge_study_rows", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_partial_rerun_replaces_its_rows_and_the_summary_follows():
    merge = _merge_module().merge

    def row(family, level, changed, bal=0.5, flagged=0.0):
        return {"family": family, "level": level, "realistic": True,
                "readers": {"r": {"subjects": {"balanced_accuracy": bal, "changed": changed},
                                  "slices": {"flagged": flagged}}}}

    same = {"task": "dementia", "subject_ids": ["a", "b"], "truth": [0, 1], "folds": 4, "seed": 0,
            "readers": {"r": {"version": "v1"}}}
    module = _merge_module()
    full = {**same, "rows": [row("clean", "none", None, flagged=0.01), row("gamma", "1.25", 0.15, flagged=0.08),
                             row("jpeg", "quality 50", 0.05, flagged=0.002), row("shift", "6 px", 0.04)]}
    rerun = {**same, "rows": [row("clean", "none", None), row("gamma", "1.25", 0.08, bal=0.55, flagged=0.02)]}
    merged, replaced = merge(full, rerun)
    assert replaced == ["gamma:1.25"]
    assert [r["readers"]["r"]["subjects"]["changed"] for r in merged["rows"]] == [None, 0.08, 0.05, 0.04]
    assert merged["rows"][0]["readers"]["r"]["slices"]["flagged"] == 0.0  # the rerun's clean row
    assert module.kept_with_flags(merged, replaced) == {"jpeg:quality 50": 0.002}
    assert merged["summary"]["r"]["worst_changed"] == 0.08 and merged["summary"]["r"]["over_10_percent"] == []
    assert full["rows"][1]["readers"]["r"]["subjects"]["changed"] == 0.15  # the input is left as it was
    with pytest.raises(ValueError, match="'seed'"):
        merge(full, {**rerun, "seed": 1})
    with pytest.raises(ValueError, match="'readers'"):
        merge(full, {**rerun, "readers": {"r": {"version": "v2"}}})
    shipped = merge(full, {**rerun, "study_head": {"version": "new"}, "shipped": "r"})[0]
    assert (shipped["study_head"], shipped["shipped"]) == ({"version": "new"}, "r")
    with pytest.raises(ValueError, match="clean subject answers differ"):
        merge(full, {**rerun, "rows": [row("clean", "none", None, bal=0.6), *rerun["rows"][1:]]})
    with pytest.raises(ValueError, match="lacks"):
        merge(full, {**rerun, "rows": [rerun["rows"][0], row("blur", "2 px", 0.2)]})
