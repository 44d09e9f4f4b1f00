"""Two refusals, distinct. An image the task's detector flags but another task's detector accepts is a
brain MRI slice of the kind that task reads (``wrong_task``, naming it); anything else flagged is
``not_a_brain_mri``. Neither carries a class. The rule is recomputed here from each task's shipped statistics
(their distance is checked against the textbook formula in tests/core/test_ood_decision.py), over every fixture
and non-MRI image, for every task."""
from __future__ import annotations

import typing

import numpy as np
import pytest

from diseaseid.ood.detector import image_checks
from diseaseid.ood.images import text_on_black
from diseaseid.outcomes import NOT_A_BRAIN_MRI_DISPLAY, WRONG_TASK_DISPLAY
from diseaseid.serving import DIAGNOSIS, NOT_A_BRAIN_MRI, OUTCOMES, ROLES, WRONG_TASK, answer_study
from diseaseid.tasks import TASKS
from tests.core.test_ood_decision import mri_slices, shipped

# Measured on the committed fixtures with the statistics of the tumor student 8261307019b1 and again after their
# refit on student b52c13986af9 (2026-12-05): all 16 tumour slices sent with task=dementia are flagged by the
# dementia statistics and accepted by the tumour ones (before wrong_task existed, all were called "Not a brain MRI
# slice").
TUMOR_SLICES_AS_DEMENTIA_WRONG_TASK = 16


def stats(task: str):
    """The task's statistics, as its student (the tumor student's features for both tasks) carries them."""
    found = shipped(task, "student").feature_detector
    assert found is not None, f"no OOD statistics for {task}"
    return found


def colour_photo() -> np.ndarray:
    """A colourful gradient on black: the image checks refuse it, so it is nobody's MRI slice."""
    y, x = np.mgrid[0:224, 0:224]
    img = np.stack([x, y, 224 - x], -1).astype(np.uint8)
    img[:20], img[-20:], img[:, :20], img[:, -20:] = 0, 0, 0, 0
    return img


@pytest.fixture(scope="module")
def images(fixtures_dir) -> dict[str, np.ndarray]:
    return {"tumor": mri_slices(fixtures_dir, "tumor"), "dementia": mri_slices(fixtures_dir, "dementia"),
            "non_mri": np.stack([text_on_black(), colour_photo()])}


def test_one_list_of_outcomes_read_by_both_services():
    from diseaseid.answers import Conclusion, ExplainResult

    assert OUTCOMES == (DIAGNOSIS, NOT_A_BRAIN_MRI, WRONG_TASK) == ("diagnosis", "not_a_brain_mri", "wrong_task")
    for model in (Conclusion, ExplainResult):
        assert typing.get_args(model.model_fields["outcome"].annotation) == OUTCOMES, model


@pytest.mark.parametrize("role", ROLES)
def test_tumour_slices_sent_to_the_dementia_task_are_the_wrong_task(images, role):
    predictor = shipped("dementia", role)
    preds = predictor.predict(images["tumor"])
    assert sum(p.outcome == WRONG_TASK for p in preds) == TUMOR_SLICES_AS_DEMENTIA_WRONG_TASK == len(preds)
    detector = predictor.detector
    feats = detector.features_and_logits(images["tumor"])[0]
    own, other = stats("dementia"), stats("tumor")
    own_scores, other_scores = own.score(feats, images["tumor"]), other.score(feats, images["tumor"])
    for p, mine, theirs in zip(preds, own_scores, other_scores, strict=True):
        assert p.ood and not p.is_diagnosis and p.suited_task == "tumor"
        assert p.label is None and p.label_index is None and p.screening is None
        assert p.display_en == ("Not the kind of brain MRI slice the dementia task reads (it looks like one for "
                                "the brain tumor task)")
        assert p.display_ru == ("Не тот вид среза МРТ мозга, который читает задача «деменция» (похоже на срез "
                                "для задачи «опухоль мозга»)")
        assert p.ood_reasons == [own.reason(p.ood_score, detector.name),
                                 f"like the brain MRI slices of the tumor task (its feature distance {theirs:.1f} "
                                 f"<= {other.threshold:.1f})"]
        assert p.ood_score == pytest.approx(mine, rel=1e-4)
        assert list(p.probabilities) == list(TASKS["dementia"].classes)  # kept for tools, no diagnosis
        assert "tumor" in p.to_dict()["suited_task"]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_the_outcome_follows_the_rule_for_every_fixture_and_non_mri_image(images, task):
    """diagnosis: no image check fails and the task's detector accepts; wrong_task: the image checks pass, the
    task's detector flags it and another task's accepts it (that task named); else not_a_brain_mri."""
    batch = np.concatenate([images["tumor"], images["dementia"], images["non_mri"]])
    predictor = shipped(task, "student")
    preds = predictor.predict(batch)
    feats = predictor.detector.features_and_logits(batch)[0]
    own = stats(task).score(feats, batch)
    others = {t: stats(t).score(feats, batch) for t in TASKS if t != task}
    seen = set()
    for i, (p, x) in enumerate(zip(preds, batch, strict=True)):
        checked = bool(image_checks(x))
        accepted_by = [t for t in others if not checked and others[t][i] <= stats(t).threshold]
        if not checked and own[i] <= stats(task).threshold:
            expected = (DIAGNOSIS, None)
        elif accepted_by:
            expected = (WRONG_TASK, accepted_by[0])
        else:
            expected = (NOT_A_BRAIN_MRI, None)
        assert (p.outcome, p.suited_task) == expected, i
        assert (p.label is None) == (p.outcome != DIAGNOSIS)
        if p.outcome == NOT_A_BRAIN_MRI:
            assert (p.display_en, p.display_ru) == (NOT_A_BRAIN_MRI_DISPLAY["en"], NOT_A_BRAIN_MRI_DISPLAY["ru"])
        seen.add(p.outcome)
    # the non-MRI images (text on black, a colour picture) are never another task's
    assert [p.outcome for p in preds[-2:]] == [NOT_A_BRAIN_MRI, NOT_A_BRAIN_MRI]
    assert NOT_A_BRAIN_MRI in seen


def test_a_study_of_another_tasks_slices_is_the_wrong_task_and_a_mixed_one_not_mri(images):
    predictor = shipped("dementia", "student")
    answer = answer_study(predictor, images["tumor"][:3])
    assert answer.used == [] and answer.excluded == [0, 1, 2]
    subject = answer.subject
    assert (subject.outcome, subject.suited_task, subject.label) == (WRONG_TASK, "tumor", None)
    assert subject.display_en == WRONG_TASK_DISPLAY["en"].format(task="dementia", other="brain tumor")
    # one slice not a brain MRI at all: the subject cannot be called another task's study
    mixed = answer_study(predictor, np.concatenate([images["tumor"][:2], images["non_mri"][:1]]))
    assert [s.outcome for s in mixed.slices] == [WRONG_TASK, WRONG_TASK, NOT_A_BRAIN_MRI]
    assert (mixed.subject.outcome, mixed.subject.suited_task) == (NOT_A_BRAIN_MRI, None)
    assert mixed.subject.display_en == NOT_A_BRAIN_MRI_DISPLAY["en"]
