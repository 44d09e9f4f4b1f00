"""Loaded models ready to answer: calibrated probabilities and an out-of-distribution flag per slice.

Services use this and nothing below it: ``Predictor.from_shipped(task, role)`` then ``predict(images)``.

The OOD verdict does not depend on the model that answers: a shipped predictor carries the task's detector
(``diseaseid.ood.detector.detector_of``) and the task's feature statistics (``weights/<task>/ood.*``): the
distance of the detector's features to the task's training slices decides with the image checks (without
statistics, the detector's energy score at its card threshold). A flagged image gets no diagnosis: ``label``
and ``label_index`` are None; the probabilities stay for tools that ask. Its ``outcome`` says why:
``wrong_task`` when the image passes the image checks and another task's detector accepts it (a brain MRI slice
of the kind that task reads, named in ``suited_task``), else ``not_a_brain_mri``.

Forward passes go through the predictor's ``runtime`` (``diseaseid.serving.runtime``: the exported graph under
ONNX Runtime for shipped weights on a CPU, by default); ``model`` stays the PyTorch module, for explanations,
loaded on first use where a graph serves: predictions on a graph runtime never import torch.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diseaseid.answers import Conclusion
from diseaseid.cards import read_card
from diseaseid.ood.detector import (
    FeatureDetector,
    detector_of,
    energy_score,
    image_checks,
    load_feature_detector,
)
from diseaseid.outcomes import (
    DIAGNOSIS,
    NOT_A_BRAIN_MRI,
    NOT_A_BRAIN_MRI_DISPLAY,
    WRONG_TASK,
    WRONG_TASK_DISPLAY,
)
from diseaseid.paths import ROLES, weights_dir
from diseaseid.serving.runtime import (
    Runtime,
    TorchRuntime,
    device_type,
    load_runtime,
    lone_budget,
    resolve,
    thread_budget,
    torch_module,
)
from diseaseid.tasks import TASKS, Task, get_task

log = logging.getLogger(__name__)


def shipped_weights(task: str, role: str) -> Path:
    """``weights/<task>/<role>.safetensors`` (and its ``.json`` card)."""
    if role not in ROLES:
        raise KeyError(f"unknown model {role!r}; choose one of {', '.join(ROLES)}")
    path = weights_dir() / task / f"{role}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"no shipped {role} model for task {task!r} at {path}")
    return path


@dataclass
class Prediction:
    label_index: int | None  # None: no diagnosis (the image was flagged as not a brain MRI slice)
    label: str | None
    display_en: str
    display_ru: str
    probabilities: dict[str, float]
    ood_score: float
    ood: bool
    ood_reasons: list[str] = field(default_factory=list)
    screening: dict | None = None  # normal vs impaired, where the task defines it (Task.screening); None if ood
    outcome: str = DIAGNOSIS  # or NOT_A_BRAIN_MRI or WRONG_TASK (then label, label_index and screening are None)
    ood_detector: str | None = None  # the model whose features (or energy) decided (name), None: image checks only
    suited_task: str | None = None  # WRONG_TASK: the task whose detector accepts the image

    @property
    def is_diagnosis(self) -> bool:
        return self.outcome == DIAGNOSIS

    @property
    def top_index(self) -> int:
        """The class with the highest probability, diagnosis or not (what explanations explain by default)."""
        return int(np.argmax(list(self.probabilities.values())))

    def to_dict(self) -> dict:
        """The answer's JSON shape (``diseaseid.answers.Conclusion``: the OOD verdict nested as ``ood``), the one
        every service and client reads."""
        return Conclusion.of(self).model_dump(mode="json")


@dataclass(frozen=True)
class TaskDetector:
    """Another task's OOD verdict: its detector model and its feature statistics (``weights/<task>/ood.*``)."""

    task: str
    model: Predictor
    statistics: FeatureDetector


_detectors: dict[tuple, Predictor] = {}
_detectors_lock = threading.Lock()


def shipped_detector(task: str, device="cpu", runtime: str | None = None) -> Predictor | None:
    """The task's OOD detector (``detector_of(task)``), loaded once per process and weights file; None (logged)
    where it is not shipped. Used only for forward passes, so every predictor may share it."""
    try:
        path = shipped_weights(*detector_of(task))
    except FileNotFoundError as exc:
        log.warning("no OOD detector for %s (%s); each model's own energy score decides", task, exc)
        return None
    # the thread budgets too: a detector's sessions keep the budgets in force when it was made
    key = (str(path), path.stat().st_mtime_ns, str(device), runtime, thread_budget(), lone_budget())
    with _detectors_lock:
        detector = _detectors.get(key)
        if detector is None:
            detector = _detectors[key] = Predictor.from_weights(path, device, runtime)
    return detector


def other_task_detectors(task: str, device="cpu", runtime: str | None = None) -> list[TaskDetector]:
    """The shipped detectors of every task but ``task``, in registry order, where that task ships feature
    statistics fitted on its detector: what tells "not the kind of MRI this task reads" from "not a brain MRI".
    A task without usable statistics is left out (logged), so it is never named as the suited task."""
    found = []
    for other in TASKS:
        if other == task:
            continue
        model = shipped_detector(other, device, runtime)
        if model is None:
            continue
        try:
            statistics = load_feature_detector(other, weights_dir(), model.version)
        except ValueError as exc:
            log.warning("task %s: its OOD statistics are unusable, so no image is sent its way (%s)", other, exc)
            continue
        if statistics is not None:
            found.append(TaskDetector(other, model, statistics))
    return found


def _load_model(path: str | Path, device):
    torch_module()  # keeps to the process's thread budget
    from diseaseid.models.checkpoint import load_model

    return load_model(path, device)[0].eval()


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of N x C float32 logits (as ``torch.softmax(x, dim=1)``, within float32 rounding)."""
    x = np.asarray(logits, np.float32)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _score_each(statistics: FeatureDetector, feats: np.ndarray, images: np.ndarray) -> np.ndarray:
    """``statistics.score`` of each image on its own: the BLAS product inside rounds differently for other row
    counts (1e-13 apart), and an image's score must not depend on the batch it came in (a study's slices answer
    exactly as single requests do, whatever the batch size)."""
    if len(feats) == 1:
        return statistics.score(feats, images)
    return np.concatenate([statistics.score(feats[i:i + 1], images[i:i + 1]) for i in range(len(feats))])


class Predictor:
    def __init__(self, model, card: dict, device="cpu", detector: Predictor | None = None,
                 feature_detector: FeatureDetector | None = None, runtime: Runtime | None = None,
                 weights: str | Path | None = None):
        """``model``: the PyTorch module, or None to load it from ``weights`` on first use of ``model`` (a graph
        runtime serves predictions without it)."""
        if model is None and weights is None:
            raise ValueError("a Predictor needs its model or the weights to load it from")
        self._model = model.eval() if model is not None else None
        self._model_lock = threading.Lock()
        self.weights = Path(weights) if weights is not None else None
        self.card = card
        self._device = device
        # What runs the forward passes of predictions (PyTorch unless told); explanations use ``model``.
        self.runtime: Runtime = runtime if runtime is not None else TorchRuntime(self.model, device)
        self.task: Task = get_task(card["task"])
        self.role: str = card.get("role", card["arch"])
        self.temperature: float = float(card.get("calibration", {}).get("temperature", 1.0))
        ood = card.get("ood", {})
        self.ood_threshold: float | None = ood.get("threshold")
        # Whose model decides OOD: ``detector`` (the task's shipped detector), else this model; by the distance of
        # its features (``feature_detector``, this task's statistics) or else by its energy score.
        self.detector: Predictor = detector if detector is not None else self
        self.feature_detector = feature_detector
        # Other tasks' detectors: a flagged image one of them accepts is the wrong task's, not a non-MRI image.
        self.other_tasks: list[TaskDetector] = []

    @property
    def model(self):
        """The PyTorch module (explanations, training, the PyTorch runtime), loaded on first use where a graph
        runtime serves."""
        if self._model is None:
            with self._model_lock:
                if self._model is None:
                    self._model = _load_model(self.weights, self._device)
        return self._model

    @property
    def device(self):
        """The ``torch.device`` of ``model`` (imports torch: the serving path reads ``device_type`` instead)."""
        return torch_module().device(self._device)

    @property
    def device_type(self) -> str:
        return device_type(self._device)

    @classmethod
    def from_weights(cls, path: str | Path, device="cpu", runtime: str | None = None) -> Predictor:
        """``runtime``: a name in ``diseaseid.serving.runtime.RUNTIMES`` or ``auto``; None: ``$DISEASEID_RUNTIME``.
        Where an exported graph serves, the PyTorch model is loaded only when something asks for it."""
        if resolve(runtime, device)[0] == "torch":
            from diseaseid.models.checkpoint import load_model

            model, card = load_model(path, device)
            return cls(model, card, device, runtime=load_runtime(runtime, path, model, device), weights=path)
        served = load_runtime(runtime, path, lambda: _load_model(path, device), device)
        model = served.model if isinstance(served, TorchRuntime) else None  # fell back to PyTorch
        return cls(model, read_card(path), device, runtime=served, weights=path)

    @classmethod
    def from_shipped(cls, task: str, role: str = "student", device="cpu", runtime: str | None = None) -> Predictor:
        """A shipped model with the task's OOD detector (itself when it is that model), both on ``runtime``."""
        predictor = cls.from_weights(shipped_weights(task, role), device, runtime)
        found = True  # the task's shipped detector model decides (not a fallback to this model's energy)
        if (task, role) != detector_of(task):
            detector = shipped_detector(task, device, runtime)
            predictor.detector = detector or predictor
            found = detector is not None
        if found:
            predictor.feature_detector = load_feature_detector(task, weights_dir(), predictor.detector.version)
        predictor.other_tasks = other_task_detectors(task, device, runtime)
        return predictor

    @property
    def name(self) -> str:
        return f"{self.task.name}/{self.role}:{self.card['arch']}"

    @property
    def version(self) -> str:
        return self.card.get("version", "unknown")

    def logits(self, images: np.ndarray):
        """N x 224 x 224 x 3 uint8 -> N x C raw logits (a float32 torch tensor, on the CPU)."""
        return torch_module().from_numpy(self.runtime.run(images, features=False)[1])

    def features_and_logits(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """N x 224 x 224 x 3 uint8 -> (N x F pooled penultimate features, N x C raw logits), one forward pass."""
        return self.runtime.run(images, features=True)

    def batched_logits(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Logits of many images (an evaluation set), ``batch_size`` at a time."""
        parts = [self.runtime.run(images[s:s + batch_size], features=False)[1]
                 for s in range(0, len(images), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.task.classes)), np.float32)

    def predict(self, images: np.ndarray | list[np.ndarray]) -> list[Prediction]:
        return self.predict_with_features(images, keep_features=False)[0]

    def predict_with_features(self, images: np.ndarray | list[np.ndarray], keep_features: bool = True
                              ) -> tuple[list[Prediction], np.ndarray | None]:
        """``predict`` and, with ``keep_features``, this model's own pooled features of the same forward pass
        (N x F; what a subject-level head over this model reads), else None."""
        images = np.stack(images) if isinstance(images, list) else images
        if images.ndim == 3:
            images = images[None]
        detector, features = self.detector, self.feature_detector
        feats = None
        if features is not None:
            if detector is self:
                own, logits_np = self.features_and_logits(images)
                feats = own
            else:
                own, logits_np = self.runtime.run(images, features=keep_features)
                feats = detector.features_and_logits(images)[0]
            scores = _score_each(features, feats, images)
            flags = [s > features.threshold for s in scores]
            extra = [features.reason(float(s), detector.name) for s in scores]
        else:
            own, logits_np = self.runtime.run(images, features=keep_features)
            scores = energy_score(logits_np if detector is self else detector.runtime.run(images, features=False)[1])
            threshold = detector.ood_threshold
            flags = [threshold is not None and s > threshold for s in scores]
            extra = [f"unusual for the {detector.name} detector (energy {s:.2f} > {threshold:.2f})"
                     if flag else "" for s, flag in zip(scores, flags)]
        probs = softmax(logits_np / np.float32(self.temperature))
        checks = [image_checks(img) for img in images]
        # Only an image the image checks pass can be another task's: a colourful photo is nobody's MRI slice.
        suited = self._suited_tasks(images, [i for i, f in enumerate(flags) if f and not checks[i]], feats)
        predictions = [self._prediction(p, float(s), [*check, *([why] if flag else []), *suited.get(i, ("", []))[1]],
                                        suited.get(i, (None, []))[0])
                       for i, (p, s, check, flag, why) in enumerate(zip(probs, scores, checks, flags, extra))]
        return predictions, (own if keep_features else None)

    def _suited_tasks(self, images: np.ndarray, flagged: list[int], feats: np.ndarray | None
                      ) -> dict[int, tuple[str, list[str]]]:
        """index -> (task, [why]) for the ``flagged`` images another task's detector accepts (the first such
        task in registry order). Where the other task's detector is this task's detector model (both tasks'
        is the tumor student), the features already computed are scored again: no forward pass."""
        found: dict[int, tuple[str, list[str]]] = {}
        for other in self.other_tasks:
            left = [i for i in flagged if i not in found]
            if not left:
                break
            same = (feats is not None and other.model.name == self.detector.name
                    and other.model.version == self.detector.version)
            other_feats = feats[left] if same else other.model.features_and_logits(images[left])[0]
            scores = _score_each(other.statistics, other_feats, images[left])
            threshold = other.statistics.threshold
            for i, score in zip(left, scores):
                if score <= threshold:
                    found[i] = (other.task, [f"like the brain MRI slices of the {other.task} task (its feature "
                                             f"distance {score:.1f} <= {threshold:.1f})"])
        return found

    def aggregate(self, predictions: list[Prediction], probabilities: np.ndarray | None = None) -> Prediction:
        """Subject-level result from the slices not flagged as OOD: the mean of their calibrated probabilities,
        or ``probabilities`` from a subject-level model run on those slices only (diseaseid.serving.study).
        When every slice is flagged the subject gets no diagnosis (probabilities: the mean over all slices):
        ``wrong_task`` when every slice is the same other task's, else ``not_a_brain_mri``."""
        used = [p for p in predictions if not p.ood]
        reasons: list[str] = []
        suited = None
        if not used:  # every slice flagged: no diagnosis
            used = predictions
            reasons = sorted({r for p in predictions for r in p.ood_reasons}) or ["every slice was flagged"]
            others = {p.suited_task for p in predictions}
            suited = others.pop() if len(others) == 1 else None
        probs = probabilities if probabilities is not None and not reasons else np.mean(
            [[p.probabilities[c] for c in self.task.classes] for p in used], axis=0)
        score = float(np.mean([p.ood_score for p in used]))
        return self._prediction(probs, score, reasons, suited)

    def _prediction(self, probs: np.ndarray, score: float, reasons: list[str], suited_task: str | None = None
                    ) -> Prediction:
        """``reasons``: why the image is not a brain MRI slice of this task (image checks, then the detector,
        then which other task's detector accepts it); none: a diagnosis. ``suited_task``: that other task."""
        probabilities = {c: float(p) for c, p in zip(self.task.classes, probs)}
        decides = self.feature_detector is not None or self.detector.ood_threshold is not None
        detector = self.detector.name if decides else None
        if reasons:
            if suited_task is None:
                outcome, display = NOT_A_BRAIN_MRI, NOT_A_BRAIN_MRI_DISPLAY
            else:
                outcome = WRONG_TASK
                display = {lang: WRONG_TASK_DISPLAY[lang].format(task=self.task.title(lang),
                                                                 other=get_task(suited_task).title(lang))
                           for lang in ("en", "ru")}
            return Prediction(label_index=None, label=None, display_en=display["en"], display_ru=display["ru"],
                              probabilities=probabilities, ood_score=score, ood=True, ood_reasons=list(reasons),
                              screening=None, outcome=outcome, ood_detector=detector, suited_task=suited_task)
        i = int(np.argmax(probs))
        return Prediction(
            label_index=i,
            label=self.task.classes[i],
            display_en=self.task.display(i, "en"),
            display_ru=self.task.display(i, "ru"),
            probabilities=probabilities,
            ood_score=score,
            ood=False,
            ood_reasons=[],
            screening=self.task.screening(probs),
            ood_detector=detector,
        )
