"""The OOD decision is the task's detector's, whichever model answers; a flagged image gets no
diagnosis; a study leaves its flagged slices out and says so. Expected distances are computed here from the
shipped statistics with the textbook formula (full covariance, solved), not by the serving code; the flag
rates on the held-out non-MRI images and the fixtures are recomputed through the serving path and must match
what ``diseaseid ood-fit`` recorded in ``weights/<task>/ood.json``."""
from __future__ import annotations

import functools
import json
import logging
import shutil

import numpy as np
import pytest
import torch

from diseaseid.data.preprocess import decode_image
from diseaseid.data.tensors import normalize
from diseaseid.ood.detector import (
    STATS_STEM,
    FeatureDetector,
    detector_of,
    image_checks,
    image_statistics,
    load_feature_detector,
)
from diseaseid.ood.images import cat_on_black, text_on_black
from diseaseid.outcomes import NOT_A_BRAIN_MRI_DISPLAY
from diseaseid.paths import weights_dir
from diseaseid.serving import NOT_A_BRAIN_MRI, ROLES, WRONG_TASK, StudyModel, answer_study
from diseaseid.serving.study import study_backbone_role
from diseaseid.tasks import TASKS
from tests.shipped import shipped_predictor

pytest.importorskip("skimage")

NON_MRI = {"cat_on_black": cat_on_black, "text_on_black": text_on_black}
# How far past the threshold the two images of the issue must lie: a retrained detector that only just flags
# them fails here, not by chance in a service test. Measured: on the detector fitted to teacher bd61cf15bb63
# both lay >= 1.3x past it; on 38e6739881bf (the averaged teacher) the cat on black lies 1.10x past the tumor
# threshold (113.9 vs 103.4), the others still >= 1.3x. On the tumor student 8261307019b1 (the detector since
# 2026-12-03) the cat lies 1.20x past the tumor threshold, the text 2.32x, both >= 3.4x past the dementia one.
MARGIN = 1.05
# Probabilities of the same slices run through a shipped network in other batches: float32 kernels may round
# otherwise per batch size and CPU (8.5e-4 relative on an Intel Xeon with AMX).
FLOAT32_BATCHES = 2e-3


shipped = shipped_predictor


@functools.cache
def stats(task: str) -> FeatureDetector:
    found = shipped(task, "teacher").feature_detector
    assert found is not None, f"no OOD statistics for {task}: run `python -m diseaseid ood-fit --task {task}`"
    return found


def literal_distance2(fd: FeatureDetector, feats: np.ndarray) -> np.ndarray:
    """min over class means of (x - m)^T Sigma^-1 (x - m), Sigma rebuilt in full from its PPCA parts."""
    v = fd.basis
    cov = v @ np.diag(fd.variances) @ v.T + fd.residual_variance * (np.eye(len(v)) - v @ v.T)
    out = []
    for x in feats.astype(np.float64):
        out.append(min(float((x - m) @ np.linalg.solve(cov, x - m)) for m in fd.means.astype(np.float64)))
    return np.array(out)


def literal_distance(fd: FeatureDetector, feats: np.ndarray, images: np.ndarray) -> np.ndarray:
    """sqrt(feature distance^2 + weight x image-statistics distance^2); the feature distance alone where the
    statistics hold no image statistics (the tumor task since issue 24)."""
    if fd.image_mean is None:
        return np.sqrt(literal_distance2(fd, feats))
    image_d2 = [float((s - fd.image_mean) @ fd.image_precision @ (s - fd.image_mean))
                for s in (image_statistics(x) for x in images)]
    return np.sqrt(literal_distance2(fd, feats) + fd.image_weight * np.array(image_d2))


def detector_features(task: str, images: np.ndarray) -> np.ndarray:
    """The detector model's pooled penultimate features, through timm's interface, not the serving code."""
    model = shipped(*detector_of(task)).model
    with torch.no_grad():
        return model.forward_head(model.forward_features(normalize(images)), pre_logits=True).numpy()


def detector_score(task: str, images: np.ndarray) -> np.ndarray:
    return literal_distance(stats(task), detector_features(task, images), images)


def mri_slices(fixtures_dir, task: str, pattern: str = "*/*.jpg") -> np.ndarray:
    return np.stack([decode_image(p) for p in sorted((fixtures_dir / task).glob(pattern))])


def check_no_diagnosis(p, task: str, mri: bool = False) -> None:
    """No diagnosis, not a brain MRI slice; for a brain MRI slice (``mri``) another task's detector may accept,
    ``wrong_task`` naming that task (its rule: tests/core/test_wrong_task.py)."""
    assert p.ood and not p.is_diagnosis
    assert p.label is None and p.label_index is None and p.screening is None
    if mri and p.outcome == WRONG_TASK:
        assert p.suited_task in TASKS and p.suited_task != task and p.display_en.startswith("Not the kind of")
    else:
        assert p.outcome == NOT_A_BRAIN_MRI and p.suited_task is None
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
    assert not image_checks(image), "the image checks alone let it through: the detector must decide"
    score = float(detector_score(task, image[None])[0])
    detector = shipped(*detector_of(task))
    assert score > MARGIN * stats(task).threshold, "the detector does not find it clearly unusual"
    for role in ROLES:
        p = shipped(task, role).predict(image[None])[0]
        check_no_diagnosis(p, task)
        assert p.ood_score == pytest.approx(score, rel=1e-3)
        assert p.ood_detector == detector.name
        assert p.ood_reasons == [stats(task).reason(p.ood_score, detector.name)]


@pytest.mark.parametrize("task", sorted(TASKS))
def test_the_verdict_does_not_depend_on_the_model(task, fixtures_dir):
    """Student and teacher flag the same images with the same score: the detector's feature distance over
    the task's threshold, or an image check; unflagged slices keep their diagnosis."""
    images = np.concatenate([mri_slices(fixtures_dir, task), np.stack([f() for f in NON_MRI.values()])])
    score = detector_score(task, images)
    threshold = stats(task).threshold
    expected = [bool(image_checks(x)) or s > threshold for x, s in zip(images, score)]
    for role in ROLES:
        preds = shipped(task, role).predict(images)
        assert [p.ood for p in preds] == expected, role
        assert np.allclose([p.ood_score for p in preds], score, rtol=1e-3)
        for k, p in enumerate(preds):
            if p.ood:
                check_no_diagnosis(p, task, mri=k < len(images) - len(NON_MRI))
            else:
                probs = p.probabilities
                assert p.is_diagnosis and p.label == max(probs, key=probs.get) and not p.ood_reasons
    # The goal on MRI (at most 5% flagged) is measured on the validation slices by `diseaseid ood-fit`; the
    # committed fixtures are flagged exactly where its record says.
    card = stats(task).card
    fixtures = sorted((fixtures_dir / task).glob("*/*.jpg"))
    flagged = [f"{p.parent.name}/{p.name}" for p, e in zip(fixtures, expected) if e]
    assert flagged == card["fixtures_flagged"] and len(fixtures) == card["fixtures_n"]
    assert len(flagged) <= 0.1 * len(fixtures)


@functools.cache
def heldout() -> tuple[list[str], np.ndarray]:
    from diseaseid.data.preprocess import to_uint8_rgb
    from diseaseid.ood.images import non_mri

    images = non_mri("heldout")  # decoded as an upload of each is (head crop included), as the fit measured them
    return list(images), np.stack([to_uint8_rgb(x) for x in images.values()])


@pytest.mark.parametrize("task", sorted(TASKS))
def test_heldout_non_mri_images_are_flagged(task):
    """The goal (>= 95% of non-MRI images) on images no threshold or statistic was fitted on, through the
    serving path; which ones pass is what the fit recorded."""
    names, images = heldout()
    preds = shipped(task, "student").predict(images)
    flagged = np.array([p.ood for p in preds])
    assert flagged.mean() >= 0.95
    record = stats(task).card["non_mri"]["heldout"]
    assert [n for n, f in zip(names, flagged) if not f] == record["missed"]
    assert flagged.mean() == pytest.approx(record["flagged"]) and len(names) == record["n"]
    # and none of them gets a diagnosis: one is called another task's slice (wrong_task) exactly when
    # that task's detector misses it too, as its record says; the others are not a brain MRI
    missed_by = {t: set(stats(t).card["non_mri"]["heldout"]["missed"]) for t in TASKS if t != task}
    for name, p in zip(names, preds):
        if p.ood:
            suited = next((t for t in missed_by if name in missed_by[t]), None)
            assert p.label is None and (p.outcome, p.suited_task) == (
                (WRONG_TASK, suited) if suited else (NOT_A_BRAIN_MRI, None)), name


@pytest.mark.parametrize("task", sorted(TASKS))
def test_statistics_fit_the_shipped_detector_and_the_goal(task):
    card = stats(task).card
    detector = shipped(*detector_of(task))
    assert card["detector"] == {"task": detector.task.name, "role": detector.role, "name": detector.name,
                                "version": detector.version}
    assert card["task"] == task and card["classes"] == list(TASKS[task].classes)
    assert card["val_mri_flagged"] <= card["fitted_on"]["max_mri_flagged"] <= 0.05
    assert card["val_mri_flagged_cross_fitted"] <= 0.05
    assert card["non_mri"]["calibration"]["flagged"] >= 0.95 and card["non_mri"]["heldout"]["flagged"] >= 0.95


def _share(count: str) -> float:
    flagged, n = count.split("/")
    return int(flagged) / int(n)


def test_tumor_statistics_meet_issue_24s_ood_goals():
    """Issue 24, as measured at fitting on validation (the held-back test set is not read): clean MRI flagged at
    most 0.5% on slices the threshold never saw (cross-fitted, one split and the mean of many), every family of
    realistic change at most 5%, non-MRI images still flagged at least 95% (calibration and held-out)."""
    card = stats("tumor").card
    assert card["val_mri_flagged"] <= 0.005
    assert card["val_mri_flagged_cross_fitted"] <= 0.005 and card["val_mri_flagged_cross_fitted_splits"] <= 0.005
    assert card["cross_fit_splits"] >= 10
    families = card["val_perturbed_mri_flagged_by_family"]
    assert len(families) >= 10 and sum(int(v.split("/")[1]) for v in families.values()) == card["fitted_on"][
        "val_slices"]
    assert max(_share(v) for v in families.values()) <= 0.05
    assert card["val_perturbed_mri_flagged"] <= 0.05 and card["val_perturbed_mri_flagged_cross_fitted_splits"] <= 0.05
    assert card["non_mri"]["calibration"]["flagged"] >= 0.95 and card["non_mri"]["heldout"]["flagged"] >= 0.95


@pytest.mark.parametrize("task", sorted(TASKS))
def test_the_fast_distance_is_the_textbook_one(task):
    fd = stats(task)
    rng = np.random.default_rng(0)
    feats = np.concatenate([fd.means + rng.normal(0, 0.05, fd.means.shape),
                            rng.normal(fd.means.mean(0), 1.0, (6, fd.means.shape[1]))])
    np.testing.assert_allclose(fd.feature_distance2(feats), literal_distance2(fd, feats), rtol=1e-6)
    assert fd.feature_distance2(fd.means).max() < 1e-6  # a class mean is at distance 0
    images = np.stack([cat_on_black(), text_on_black()])
    if fd.card["fitted_on"].get("image_weight", 0.5):  # fitted with image statistics (the default weight)
        assert fd.image_weight > 0 and fd.image_precision.shape == (len(fd.image_mean),) * 2
        with pytest.raises(ValueError):
            fd.score(feats[:2])  # the image statistics need the images
    else:  # the features alone decide: nothing else is stored, the images change nothing
        assert fd.image_mean is None and fd.image_precision is None and fd.image_weight == 0
        np.testing.assert_array_equal(fd.score(feats[:2]), fd.score(feats[:2], images))
    np.testing.assert_allclose(fd.score(feats[:2], images), literal_distance(fd, feats[:2], images), rtol=1e-6)


def test_statistics_of_another_detector_version_are_ignored(tmp_path, caplog):
    """A retrained detector model makes the statistics stale: they are not used (the energy score decides)
    until `diseaseid ood-fit` is rerun, and the log says so."""
    (tmp_path / "tumor").mkdir()
    for suffix in (".json", ".safetensors"):
        shutil.copy(weights_dir() / "tumor" / f"{STATS_STEM}{suffix}", tmp_path / "tumor" / f"{STATS_STEM}{suffix}")
    version = stats("tumor").detector["version"]
    assert load_feature_detector("tumor", tmp_path, version) is not None
    card_path = tmp_path / "tumor" / f"{STATS_STEM}.json"
    card = json.loads(card_path.read_text())
    card["detector"]["version"] = "0123456789ab"
    card_path.write_text(json.dumps(card))
    with caplog.at_level(logging.WARNING, logger="diseaseid.ood.detector"):
        assert load_feature_detector("tumor", tmp_path, version) is None
    assert "ood-fit" in caplog.text
    assert load_feature_detector("dementia", tmp_path, version) is None  # none shipped there: None, quietly


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
    # another batch (2 slices, not 3): float32 kernels may round otherwise, by CPU; the cat in the
    # mean would move it by tenths
    assert subject.probabilities == pytest.approx(alone.subject.probabilities, abs=FLOAT32_BATCHES)


def test_a_cat_among_dementia_slices_is_left_out_of_the_head(fixtures_dir):
    """The subject-level head reads the unflagged slices only, in their order; the cat weighs nothing."""
    teacher = shipped("dementia", study_backbone_role("dementia") or "teacher")  # the model the head reads
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
                       expected.probabilities, atol=FLOAT32_BATCHES)
    assert answer.attention[1] == 0 and answer.attention.sum() == pytest.approx(1, abs=1e-5)
    assert np.allclose(answer.attention[answer.used], expected.attention, atol=FLOAT32_BATCHES)
    assert answer.subject.is_diagnosis and answer.subject.screening is not None


@pytest.mark.parametrize("task", sorted(TASKS))
def test_a_study_of_non_mri_only_gets_no_diagnosis(task):
    teacher = shipped(task, study_backbone_role(task) or "teacher")  # the model the head reads, where there is one
    study = StudyModel.from_shipped(task, teacher)
    answer = answer_study(teacher, [cat_on_black(), text_on_black()], study)
    assert (answer.used, answer.excluded, answer.attention) == ([], [0, 1], None)
    check_no_diagnosis(answer.subject, task)
    classes = TASKS[task].classes
    mean = np.mean([[p.probabilities[c] for c in classes] for p in answer.slices], axis=0)
    assert np.allclose([answer.subject.probabilities[c] for c in classes], mean, atol=1e-6)


def test_gray_and_chroma_equal_numpys_means_to_the_bit():
    """The image checks' grey level and chroma (channel sums divided in float64) are numpy's ``mean(axis=2)``
    exactly, on served fixtures, noise and colour images, so no verdict can move with the faster code."""
    from diseaseid.data.preprocess import decode_image
    from diseaseid.ood.detector import _gray_chroma
    from diseaseid.paths import fixtures_dir

    rng = np.random.default_rng(0)
    images = [decode_image(p) for p in sorted(fixtures_dir().rglob("*.jpg"))[:12]]
    images += [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(8)]
    images += [np.dstack([rng.integers(0, 256, (112, 112), dtype=np.uint8)] * 2
                         + [rng.integers(0, 40, (112, 112), dtype=np.uint8)])]
    assert len(images) > 18
    for img in images:
        x = img.astype(np.float32)
        want_gray = x.mean(axis=2)
        want_chroma = np.abs(x - want_gray[..., None]).mean(axis=2)
        gray, chroma = _gray_chroma(img)
        assert gray.dtype == want_gray.dtype and np.array_equal(gray, want_gray)
        assert np.array_equal(chroma, want_chroma)
