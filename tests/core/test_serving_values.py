"""Serving by value: what ``Predictor`` and ``answer_study`` answer for known logits (so that a mutated formula fails a
test).

A small deterministic model stands in for the network (logits a linear function of the image's mean), so
every served number can be recomputed by hand: calibrated probabilities, the energy score against the
detector's threshold (strictly above flags), the fields of a flagged and of an unflagged answer, the
subject-level mean over the unflagged slices, and what a subject-level head is given and answers."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch import nn

from diseaseid.data.tensors import normalize
from diseaseid.ood.detector import image_checks
from diseaseid.outcomes import NOT_A_BRAIN_MRI, NOT_A_BRAIN_MRI_DISPLAY
from diseaseid.serving import predictor as predictor_module
from diseaseid.serving.predictor import Prediction, Predictor, shipped_detector, shipped_weights
from diseaseid.serving.study import BackboneMismatch, StudyModel, answer_study, shipped_mil
from diseaseid.tasks import get_task

SLOPE = torch.tensor([-4.0, 0.0, 1.0, 4.0])  # over the images' means (-1.8 to -0.9) classes 0, 1 and 3 win
BIAS = torch.tensor([-4.0, 2.5, 0.0, 6.5])


class MeanLinear(nn.Module):
    """logits = mean(normalised image) * slope + bias; features = the per-channel means (3-d embedding)."""

    def __init__(self, slope: torch.Tensor = SLOPE, bias: torch.Tensor = BIAS):
        super().__init__()
        self.slope, self.bias = slope, bias

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))

    def forward_head(self, f: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return f if pre_logits else f.mean(dim=1, keepdim=True) * self.slope + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def mri_like(amplitude: float, width: float = 45.0) -> np.ndarray:
    """A gray, smooth blob on a black background: passes every image check."""
    yy, xx = np.mgrid[:224, :224]
    gray = amplitude * np.exp(-((yy - 112) ** 2 + (xx - 112) ** 2) / (2 * width ** 2))
    return np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def colour_image() -> np.ndarray:
    img = mri_like(200)
    img[..., 0] = 0  # strongly coloured where lit
    return img


BLOBS = ((60, 45), (110, 45), (140, 50), (160, 60), (175, 62))  # (amplitude, width)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    imgs = np.stack([mri_like(a, w) for a, w in BLOBS])
    assert all(image_checks(i) == [] for i in imgs)
    return imgs


def card(task: str = "tumor", temperature: float | None = 1.7, threshold: float | None = None, **extra) -> dict:
    c = {"task": task, "arch": "meanlin", "role": "student", **extra}
    if temperature is not None:
        c["calibration"] = {"temperature": temperature}
    if threshold is not None:
        c["ood"] = {"threshold": threshold}
    return c


def expected_probs(model: nn.Module, images: np.ndarray, temperature: float) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(normalize(images)) / temperature, dim=1).numpy()


def energies(model: nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return -torch.logsumexp(model(normalize(images)), dim=1).numpy()


def probs_of(p: Prediction, task) -> np.ndarray:
    return np.array([p.probabilities[c] for c in task.classes])


@pytest.mark.parametrize("task_name", ["tumor", "dementia"])
def test_an_unflagged_slice_gets_its_diagnosis_with_every_field(images, task_name):
    task = get_task(task_name)
    model = MeanLinear()
    predictor = Predictor(model, card(task_name, temperature=1.7))
    assert predictor.temperature == 1.7 and predictor.ood_threshold is None and predictor.detector is predictor
    want = expected_probs(model, images, 1.7)
    scores = energies(model, images)
    got = predictor.predict(list(images))  # a list of slices is stacked
    assert len(got) == len(images)
    assert len({int(np.argmax(w)) for w in want}) > 1  # the images do not all get the same class
    for p, w, s in zip(got, want, scores):
        i = int(np.argmax(w))
        assert list(p.probabilities) == list(task.classes)
        np.testing.assert_allclose(probs_of(p, task), w, rtol=1e-5, atol=1e-7)
        assert p.ood_score == pytest.approx(float(s), abs=1e-5)
        assert (p.label_index, p.label) == (i, task.classes[i])
        assert (p.display_en, p.display_ru) == (task.display(i, "en"), task.display(i, "ru"))
        assert p.ood is False and p.ood_reasons == [] and p.outcome == "diagnosis" and p.is_diagnosis
        assert p.suited_task is None  # a diagnosis names no other task
        screening = task.screening(w)  # from torch's softmax; the served one is numpy's, equal within float32
        assert p.screening == (screening and {**screening, "impaired_probability": pytest.approx(
            screening["impaired_probability"], abs=1e-7)})
        assert p.ood_detector is None  # no threshold anywhere: the image checks alone decide
        assert p.top_index == i
        # The answer's shape (diseaseid.answers.Conclusion): the OOD verdict nested, every other field as is.
        assert p.to_dict() == {"outcome": "diagnosis", "suited_task": None, "label": task.classes[i],
                               "label_index": i, "display_en": p.display_en, "display_ru": p.display_ru,
                               "probabilities": p.probabilities, "screening": p.screening,
                               "ood": {"flag": False, "score": p.ood_score, "reasons": [], "detector": None}}
    if task_name == "dementia":
        assert all(p.screening is not None for p in got)


def test_energy_strictly_above_the_threshold_flags_the_slice(images):
    task = get_task("tumor")
    model = MeanLinear()
    scores = energies(model, images)
    order = np.argsort(scores)
    assert np.all(np.diff(scores[order]) > 1e-3)
    mid = order[len(order) // 2]
    threshold = float(torch.tensor(scores[mid]))  # exactly the middle image's score: not above, not flagged
    predictor = Predictor(model, card(threshold=threshold))
    assert predictor.ood_threshold == threshold
    got = predictor.predict(images)
    want = expected_probs(model, images, 1.7)
    for k, (p, s) in enumerate(zip(got, scores)):
        np.testing.assert_allclose(probs_of(p, task), want[k], rtol=1e-5, atol=1e-7)  # kept for tools that ask
        assert p.ood_score == pytest.approx(float(s), abs=1e-5)
        assert p.ood_detector == "tumor/student:meanlin"
        if s > threshold:
            assert p.ood is True and p.outcome == NOT_A_BRAIN_MRI and not p.is_diagnosis
            assert p.label is None and p.label_index is None and p.screening is None
            assert p.display_en == NOT_A_BRAIN_MRI_DISPLAY["en"] and p.display_ru == NOT_A_BRAIN_MRI_DISPLAY["ru"]
            assert p.ood_reasons == [f"unusual for the tumor/student:meanlin detector "
                                     f"(energy {p.ood_score:.2f} > {threshold:.2f})"]
            assert p.top_index == int(np.argmax(want[k]))
        else:
            assert p.ood is False and p.label_index == int(np.argmax(want[k])) and p.ood_reasons == []
    flagged = [k for k, s in enumerate(scores) if s > threshold]
    assert 0 < len(flagged) < len(images) and mid not in flagged


def test_the_tasks_detector_decides_not_the_answering_model(images):
    answering = MeanLinear()
    detecting = MeanLinear(slope=torch.tensor([-1.0, 2.0, 0.0, 1.0]), bias=torch.tensor([0.5, -0.5, 2.0, 0.0]))
    det_scores = energies(detecting, images)
    own_scores = energies(answering, images)
    threshold = float(np.median(det_scores))
    detector = Predictor(detecting, card(threshold=threshold, role="teacher"))
    # the answering model's own card threshold is not the one that decides
    predictor = Predictor(answering, card(threshold=float(own_scores.max()) + 1.0), detector=detector)
    got = predictor.predict(images)
    for p, s in zip(got, det_scores):
        assert p.ood_score == pytest.approx(float(s), abs=1e-5)
        assert p.ood == bool(s > threshold)
        assert p.ood_detector == "tumor/teacher:meanlin"
        if p.ood:
            assert p.ood_reasons[-1].startswith("unusual for the tumor/teacher:meanlin detector")
    assert 0 < sum(p.ood for p in got) < len(images)
    np.testing.assert_allclose([probs_of(p, get_task("tumor")) for p in got],
                               expected_probs(answering, images, 1.7), rtol=1e-5, atol=1e-7)
    # a detector without a threshold: no energy rule, and no detector named
    quiet = Predictor(answering, card(), detector=Predictor(detecting, card(role="teacher")))
    assert all(not p.ood and p.ood_detector is None for p in quiet.predict(images))


def test_image_checks_flag_a_slice_whatever_its_energy(images):
    model = MeanLinear()
    img = colour_image()
    reasons = image_checks(img)
    assert reasons and reasons[0].startswith("colour image")
    predictor = Predictor(model, card(threshold=1e9))
    p = predictor.predict(img)[0]  # one H x W x 3 image
    assert p.ood and p.ood_reasons == reasons and p.label is None and p.outcome == NOT_A_BRAIN_MRI
    assert p.ood_detector == "tumor/student:meanlin"
    # with the energy above the threshold too, both reasons are given, image checks first
    low = Predictor(model, card(threshold=-1e9))
    q = low.predict(img)[0]
    assert q.ood_reasons[:-1] == reasons and q.ood_reasons[-1].startswith("unusual for the")


def test_card_defaults_and_names():
    plain = Predictor(MeanLinear(), {"task": "dementia", "arch": "meanlin"})
    assert plain.temperature == 1.0 and plain.role == "meanlin" and plain.version == "unknown"
    assert plain.name == "dementia/meanlin:meanlin" and plain.ood_threshold is None
    named = Predictor(MeanLinear(), card("dementia", version="abc123"))
    assert named.role == "student" and named.version == "abc123" and named.name == "dementia/student:meanlin"
    assert not named.model.training and named.device == torch.device("cpu")
    assert plain.task.name == "dementia"


def flagged(task, probs, score, reasons):
    return Prediction(label_index=None, label=None, display_en="", display_ru="",
                      probabilities=dict(zip(task.classes, probs)), ood_score=score, ood=True, ood_reasons=reasons,
                      outcome=NOT_A_BRAIN_MRI)


def clean(task, probs, score):
    i = int(np.argmax(probs))
    return Prediction(label_index=i, label=task.classes[i], display_en="", display_ru="",
                      probabilities=dict(zip(task.classes, probs)), ood_score=score, ood=False)


def test_subject_is_the_mean_of_the_unflagged_slices():
    task = get_task("dementia")
    detector = Predictor(MeanLinear(), card(threshold=-100.0, role="teacher"))  # every energy is above it
    predictor = Predictor(MeanLinear(), card("dementia"), detector=detector)
    p1, p2, p3 = [0.7, 0.1, 0.1, 0.1], [0.1, 0.5, 0.3, 0.1], [0.0, 0.0, 0.0, 1.0]
    slices = [clean(task, p1, -3.0), flagged(task, p3, 9.0, ["almost uniform image"]), clean(task, p2, -5.0)]
    subject = predictor.aggregate(slices)
    want = np.mean([p1, p2], axis=0)
    np.testing.assert_allclose(probs_of(subject, task), want)
    assert subject.ood_score == pytest.approx(-4.0)
    # the subject is never flagged by energy (its slices were), whatever the detector's threshold
    assert not subject.ood and subject.label_index == int(np.argmax(want)) and subject.label == task.classes[0]
    assert subject.screening == task.screening(want)
    assert subject.ood_detector == "tumor/teacher:meanlin"
    # a subject-level model's probabilities replace the mean
    head = np.array([0.05, 0.15, 0.7, 0.1])
    from_head = predictor.aggregate(slices, head)
    np.testing.assert_allclose(probs_of(from_head, task), head)
    assert from_head.label == "MildDemented" and from_head.ood_score == pytest.approx(-4.0)


def test_a_subject_whose_slices_are_all_flagged_gets_no_diagnosis():
    task = get_task("dementia")
    predictor = Predictor(MeanLinear(), card("dementia"))
    p1, p2 = [0.7, 0.1, 0.1, 0.1], [0.1, 0.5, 0.3, 0.1]
    slices = [flagged(task, p1, 1.0, ["b reason", "a reason"]), flagged(task, p2, 3.0, ["b reason"])]
    head = np.array([0.05, 0.15, 0.7, 0.1])
    for subject in (predictor.aggregate(slices), predictor.aggregate(slices, head)):
        assert subject.ood and subject.label is None and subject.outcome == NOT_A_BRAIN_MRI
        assert subject.ood_reasons == ["a reason", "b reason"]  # each once, sorted
        np.testing.assert_allclose(probs_of(subject, task), np.mean([p1, p2], axis=0))  # not the head's
        assert subject.ood_score == pytest.approx(2.0)
    silent = predictor.aggregate([flagged(task, p1, 1.0, []), flagged(task, p2, 3.0, [])])
    assert silent.ood and silent.ood_reasons == ["every slice was flagged"]


def test_shipped_weights_paths_and_errors(tmp_path, monkeypatch):
    path = shipped_weights("tumor", "student")
    assert path.name == "student.safetensors" and path.parent.name == "tumor" and path.exists()
    with pytest.raises(KeyError, match="unknown model 'mil'; choose one of student, teacher"):
        shipped_weights("tumor", "mil")
    monkeypatch.setenv("DISEASEID_WEIGHTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no shipped student model for task 'tumor'"):
        shipped_weights("tumor", "student")


def test_shipped_predictors_share_the_tasks_detector(tmp_path, monkeypatch, caplog):
    from diseaseid.ood.detector import detector_of

    monkeypatch.setattr(predictor_module, "_detectors", {})  # loaded here, not by an earlier test
    shipped_dir = shipped_weights("tumor", "teacher").parent.parent  # DISEASEID_WEIGHTS or the repository's
    student = Predictor.from_shipped("tumor")  # the student by default
    assert student.role == "student" and student.device == torch.device("cpu")
    teacher = Predictor.from_shipped("tumor", "teacher")
    assert detector_of("tumor") == ("tumor", "student")
    assert student.detector is student  # the detector itself: one forward pass answers and decides
    assert teacher.detector is not teacher and teacher.detector.role == "student"
    assert teacher.detector.task.name == "tumor" and teacher.detector.ood_threshold is not None
    assert shipped_detector("tumor") is teacher.detector  # loaded once, shared
    assert list(predictor_module._detectors.values()) == [teacher.detector]
    assert teacher.detector.card["ood"]["threshold"] == teacher.detector.ood_threshold
    assert teacher.feature_detector is not None and student.feature_detector is not None
    assert teacher.feature_detector.detector["version"] == student.version == teacher.detector.version
    plain = Predictor.from_weights(shipped_weights("tumor", "teacher"))  # on the CPU by default
    assert plain.device == torch.device("cpu") and plain.detector is plain and plain.card == teacher.card
    # another weights file (its own path) is another detector
    copy = tmp_path / "copy"
    (copy / "tumor").mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy(shipped_weights("tumor", "student").with_suffix(suffix), copy / "tumor" / f"student{suffix}")
    monkeypatch.setenv("DISEASEID_WEIGHTS", str(copy))
    other = shipped_detector("tumor")
    assert other is not None and other is not teacher.detector and other.role == "student"
    assert len(predictor_module._detectors) == 2
    monkeypatch.setenv("DISEASEID_WEIGHTS", str(shipped_dir))
    # without the detector's weights: the model's own energy decides
    shipped = shipped_weights("tumor", "teacher")
    monkeypatch.setenv("DISEASEID_WEIGHTS", str(tmp_path))
    (tmp_path / "tumor").mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(shipped.with_suffix(suffix), tmp_path / "tumor" / f"teacher{suffix}")
    with caplog.at_level("WARNING", logger="diseaseid.serving.predictor"):
        assert shipped_detector("tumor") is None
    assert caplog.messages == [f"no OOD detector for tumor (no shipped student model for task 'tumor' at "
                               f"{tmp_path / 'tumor' / 'student.safetensors'}); each model's own energy score decides"]
    alone = Predictor.from_shipped("tumor", "teacher")
    assert alone.detector is alone and alone.feature_detector is None


# ---- the study path -------------------------------------------------------------------------------------


W_HEAD = torch.tensor([[1.0, -0.5, 0.2, 0.0], [0.3, 0.8, -1.0, 0.5], [-0.7, 0.1, 0.4, 1.2]])


class RecordingHead(nn.Module):
    """A subject-level head with a closed form, which remembers what it was given."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, feats, pos, return_attention=False):
        self.calls.append((feats.clone(), pos.clone()))
        a = torch.softmax(3 * feats[..., 0] + 2 * pos, dim=1)
        logits = (a.unsqueeze(-1) * feats).sum(1) @ W_HEAD + pos.sum(1, keepdim=True)
        return (logits, a) if return_attention else logits


def head_by_hand(feats: torch.Tensor, temperature: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pos = torch.linspace(0, 1, len(feats)) if len(feats) > 1 else torch.zeros(1)
    a = torch.softmax(3 * feats[:, 0] + 2 * pos, dim=0)
    logits = (a[:, None] * feats).sum(0) @ W_HEAD + pos.sum()
    return torch.softmax(logits / temperature, dim=0).numpy(), a.numpy(), pos.numpy()


def study_model(backbone: Predictor, temperature: float = 0.8, **extra) -> StudyModel:
    c = {"arch": "recording", "classes": list(backbone.task.classes), "calibration": {"temperature": temperature},
         **extra}
    return StudyModel(RecordingHead(), c, backbone)


def test_study_model_answers_softmax_of_the_head_over_its_temperature(images):
    backbone = Predictor(MeanLinear(), card("dementia"))
    study = study_model(backbone, version="h1")
    assert study.temperature == 0.8 and study.name == "dementia/mil:recording" and study.version == "h1"
    assert study.method == "recording" and not study.head.training
    feats = normalize(images).mean(dim=(2, 3))
    torch.testing.assert_close(study.embed(images, batch_size=2), feats)  # batches of 2, 2 and 1
    result = study.predict(images)
    probs, attention, pos = head_by_hand(feats, 0.8)
    np.testing.assert_allclose(result.probabilities, probs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(result.attention, attention, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(study.head.calls[-1][1][0].numpy(), pos, atol=1e-7)
    # one slice (H x W x 3): position 0
    one = study.predict(images[2])
    probs1, att1, _ = head_by_hand(feats[2:3], 0.8)
    np.testing.assert_allclose(one.probabilities, probs1, rtol=1e-5, atol=1e-7)
    assert study.head.calls[-1][1].tolist() == [[0.0]] and one.attention.tolist() == [1.0]
    with pytest.raises(ValueError, match="at least one slice"):
        study.predict(images[:0])
    no_t = StudyModel(RecordingHead(), {"arch": "x", "classes": list(backbone.task.classes)}, backbone)
    assert no_t.temperature == 1.0 and no_t.version == "unknown"


def test_answer_study_rests_on_the_unflagged_slices_in_their_order(images):
    task = get_task("dementia")
    model = MeanLinear()
    stack = np.stack([images[0], colour_image(), images[1], images[2], colour_image(), images[3]])
    predictor = Predictor(model, card("dementia", temperature=1.3))
    answer = answer_study(predictor, list(stack), batch_size=4)  # two batches: 4 and 2
    singles = [predictor.predict(img)[0] for img in stack]
    assert [s.to_dict() for s in answer.slices] == [s.to_dict() for s in singles]
    assert answer.used == [0, 2, 3, 5] and answer.excluded == [1, 4]
    assert answer.method == "mean" and answer.attention is None
    want = expected_probs(model, stack[answer.used], 1.3).mean(axis=0)
    np.testing.assert_allclose(probs_of(answer.subject, task), want, rtol=1e-5, atol=1e-7)
    assert answer.subject.label_index == int(np.argmax(want)) and not answer.subject.ood

    study = study_model(predictor, temperature=0.8)
    answer = answer_study(predictor, stack, study, batch_size=4)
    feats, pos = study.head.calls[-1]
    torch.testing.assert_close(feats[0], normalize(stack[answer.used]).mean(dim=(2, 3)))  # only the used, in order
    probs, attention, _ = head_by_hand(feats[0], 0.8)
    np.testing.assert_allclose(probs_of(answer.subject, task), probs, rtol=1e-5, atol=1e-7)
    assert answer.method == "recording" and answer.attention.dtype == np.float32
    want_att = np.zeros(len(stack))
    want_att[answer.used] = attention
    np.testing.assert_allclose(answer.attention, want_att, rtol=1e-5, atol=1e-7)


def test_answer_study_when_every_slice_is_flagged(images):
    task = get_task("dementia")
    predictor = Predictor(MeanLinear(), card("dementia"))
    study = study_model(predictor)
    stack = np.stack([colour_image(), colour_image()])
    answer = answer_study(predictor, stack, study)
    assert study.head.calls == []  # the head never sees a flagged slice
    assert answer.used == [] and answer.excluded == [0, 1] and answer.attention is None
    assert answer.method == "recording"
    assert answer.subject.ood and answer.subject.label is None
    np.testing.assert_allclose(probs_of(answer.subject, task), expected_probs(MeanLinear(), stack, 1.7).mean(0),
                               rtol=1e-5, atol=1e-7)
    one = answer_study(predictor, images[0])  # one H x W x 3 slice
    assert one.used == [0] and len(one.slices) == 1


def test_study_model_method_and_backbone_binding():
    backbone = Predictor(MeanLinear(), card("dementia", weights_sha256="a" * 64))
    classes = list(backbone.task.classes)
    pooled = StudyModel(RecordingHead(), {"arch": "pooled_head", "arch_args": {"kind": "slices"},
                                          "classes": classes}, backbone)
    assert pooled.method == "pooled_slices"
    assert StudyModel(RecordingHead(), {"arch": "pooled_head", "classes": classes}, backbone).method == "pooled_linear"
    mil = StudyModel(RecordingHead(), {"arch": "attention_mil", "classes": classes}, backbone)
    assert mil.method == "attention_mil"
    same = {"arch": "attention_mil", "classes": classes, "backbone": {"sha256": "a" * 64}}
    assert StudyModel(RecordingHead(), same, backbone).backbone is backbone
    other = {"arch": "attention_mil", "classes": classes, "backbone": {"sha256": "b" * 64}, "version": "v9"}
    with pytest.raises(BackboneMismatch, match=r"MIL head v9 was trained on embeddings of slice model bbbbbbbbbbbb, "
                                               r"not aaaaaaaaaaaa \(dementia/student:meanlin\)"):
        StudyModel(RecordingHead(), other, backbone)
    with pytest.raises(BackboneMismatch, match="classes"):
        StudyModel(RecordingHead(), {"arch": "attention_mil", "classes": classes[::-1]}, backbone)
    # a backbone card without its hash cannot be checked, and is accepted
    unhashed = Predictor(MeanLinear(), card("dementia"))
    assert StudyModel(RecordingHead(), other, unhashed).backbone is unhashed


def test_shipped_mil_is_the_dementia_head(tmp_path, monkeypatch):
    path = shipped_mil("dementia")
    assert path is not None and path.name == "mil.safetensors" and path.parent.name == "dementia"
    assert shipped_mil("tumor") is None
    assert StudyModel.from_shipped("tumor", Predictor(MeanLinear(), card())) is None
    monkeypatch.setenv("DISEASEID_WEIGHTS", str(tmp_path))
    assert shipped_mil("dementia") is None


def test_predictor_module_exposes_roles():
    assert predictor_module.ROLES == ("student", "teacher")
