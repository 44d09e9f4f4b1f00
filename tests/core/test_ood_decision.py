"""Issue 14: the OOD decision is the task's detector's, whichever model answers; a flagged image gets no
diagnosis; a study leaves its flagged slices out and says so. Expectations come from the code under test and
from the generated images, never from the numbers in the current model cards."""
from __future__ import annotations

import functools

import numpy as np
import pytest

from diseaseid.data.preprocess import decode_image
from diseaseid.serving import NOT_A_BRAIN_MRI, ROLES, Predictor, StudyModel, answer_study
from diseaseid.serving.ood import NOT_A_BRAIN_MRI_DISPLAY, detector_of, energy_score, image_checks
from diseaseid.tasks import TASKS
from tests.ood_images import cat_on_black, text_on_black

pytest.importorskip("skimage")

NON_MRI = {"cat_on_black": cat_on_black, "text_on_black": text_on_black}


@functools.cache
def shipped(task: str, role: str) -> Predictor:
    return Predictor.from_shipped(task, role)


def detector_energy(task: str, images: np.ndarray) -> np.ndarray:
    """What the task's detector model itself says, computed without the serving code's verdict."""
    return energy_score(shipped(*detector_of(task)).logits(images)).numpy()


def mri_slices(fixtures_dir, task: str, pattern: str = "*/*.jpg") -> np.ndarray:
    return np.stack([decode_image(p) for p in sorted((fixtures_dir / task).glob(pattern))])


def check_no_diagnosis(p, task: str) -> None:
    assert p.ood and p.outcome == NOT_A_BRAIN_MRI and not p.is_diagnosis
    assert p.label is None and p.label_index is None and p.screening is None
    assert (p.display_en, p.display_ru) == (NOT_A_BRAIN_MRI_DISPLAY["en"], NOT_A_BRAIN_MRI_DISPLAY["ru"])
    assert p.ood_reasons
    # The probabilities stay, for tools that ask.
    assert list(p.probabilities) == list(TASKS[task].classes)
    assert sum(p.probabilities.values()) == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("name", sorted(NON_MRI))
def test_non_mri_gets_no_diagnosis_from_any_model(task, name):
    """Before: the student called a grayscale cat on black "notumor 94%" and text on black 99.9%, unflagged."""
    image = NON_MRI[name]()
    assert not image_checks(image), "the image checks alone let it through: the energy score must decide"
    energy = float(detector_energy(task, image[None])[0])
    detector = shipped(*detector_of(task))
    assert energy > detector.ood_threshold, "the detector model itself does not find it unusual"
    for role in ROLES:
        p = shipped(task, role).predict(image[None])[0]
        check_no_diagnosis(p, task)
        assert p.ood_score == pytest.approx(energy, abs=1e-3)
        assert p.ood_detector == detector.name
        assert any(detector.name in r for r in p.ood_reasons)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_the_verdict_does_not_depend_on_the_model(task, fixtures_dir):
    """Student and teacher flag the same images with the same score: the detector's energy at its threshold,
    or an image check; unflagged slices keep their diagnosis."""
    images = np.concatenate([mri_slices(fixtures_dir, task), np.stack([f() for f in NON_MRI.values()])])
    energy = detector_energy(task, images)
    threshold = shipped(*detector_of(task)).ood_threshold
    expected = [bool(image_checks(x)) or e > threshold for x, e in zip(images, energy)]
    for role in ROLES:
        preds = shipped(task, role).predict(images)
        assert [p.ood for p in preds] == expected, role
        assert np.allclose([p.ood_score for p in preds], energy, atol=1e-3)
        for p in preds:
            if p.ood:
                check_no_diagnosis(p, task)
            else:
                probs = p.probabilities
                assert p.is_diagnosis and p.label == max(probs, key=probs.get) and not p.ood_reasons
    # The goal on MRI (at most 5% flagged) is measured on thousands of slices by scripts/ood_compare.py;
    # a few committed fixtures can only show the flag is not raised on most of them.
    assert np.mean(expected[:-len(NON_MRI)]) <= 0.25


def _unflagged(task: str, images: np.ndarray) -> np.ndarray:
    keep = [not p.ood for p in shipped(task, "student").predict(images)]
    return images[np.flatnonzero(keep)]


def test_a_cat_among_tumor_slices_is_left_out_of_the_subject(fixtures_dir):
    """Before: one cat among two meningioma slices left the subject "meningioma", flag false."""
    mri = _unflagged("tumor", mri_slices(fixtures_dir, "tumor", "meningioma/*.jpg"))[:2]
    assert len(mri) == 2
    cat = cat_on_black()
    predictor = shipped("tumor", "student")
    answer = answer_study(predictor, [mri[0], cat, mri[1]])
    assert (answer.used, answer.excluded, answer.method, answer.attention) == ([0, 2], [1], "mean", None)
    check_no_diagnosis(answer.slices[1], "tumor")
    alone = answer_study(predictor, mri)
    subject = answer.subject
    assert subject.is_diagnosis and not subject.ood and subject.label == alone.subject.label
    classes = TASKS["tumor"].classes
    mean = np.mean([[answer.slices[i].probabilities[c] for c in classes] for i in (0, 2)], axis=0)
    assert np.allclose([subject.probabilities[c] for c in classes], mean, atol=1e-6)
    assert subject.probabilities == pytest.approx(alone.subject.probabilities, abs=1e-6)


def test_a_cat_among_dementia_slices_is_left_out_of_the_head(fixtures_dir):
    """The subject-level head reads the unflagged slices only, in their order; the cat weighs nothing."""
    teacher = shipped("dementia", "teacher")
    study = StudyModel.from_shipped("dementia", teacher)
    if study is None:
        pytest.skip("no subject-level head shipped")
    mri = _unflagged("dementia", mri_slices(fixtures_dir, "dementia", "MildDemented/*.jpg"))[:4]
    assert len(mri) >= 2
    images = np.concatenate([mri[:1], cat_on_black()[None], mri[1:]])
    answer = answer_study(teacher, images, study)
    assert answer.excluded == [1] and answer.used == [0, *range(2, len(images))]
    expected = study.predict(mri)
    assert np.allclose([answer.subject.probabilities[c] for c in TASKS["dementia"].classes],
                       expected.probabilities, atol=1e-5)
    assert answer.attention[1] == 0 and answer.attention.sum() == pytest.approx(1, abs=1e-5)
    assert np.allclose(answer.attention[answer.used], expected.attention, atol=1e-5)
    assert answer.subject.is_diagnosis and answer.subject.screening is not None


@pytest.mark.parametrize("task", sorted(TASKS))
def test_a_study_of_non_mri_only_gets_no_diagnosis(task):
    teacher = shipped(task, "teacher")
    study = StudyModel.from_shipped(task, teacher)
    answer = answer_study(teacher, [cat_on_black(), text_on_black()], study)
    assert (answer.used, answer.excluded, answer.attention) == ([], [0, 1], None)
    check_no_diagnosis(answer.subject, task)
    classes = TASKS[task].classes
    mean = np.mean([[p.probabilities[c] for c in classes] for p in answer.slices], axis=0)
    assert np.allclose([answer.subject.probabilities[c] for c in classes], mean, atol=1e-6)
