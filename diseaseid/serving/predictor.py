"""Loaded models ready to answer: calibrated probabilities and an out-of-distribution flag per slice.

Services use this and nothing below it: ``Predictor.from_shipped(task, role)`` then ``predict(images)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from diseaseid.data.preprocess import normalize
from diseaseid.models.checkpoint import load_model
from diseaseid.paths import weights_dir
from diseaseid.serving.ood import energy_score, image_checks
from diseaseid.tasks import Task, get_task

ROLES = ("student", "teacher")


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
    label_index: int
    label: str
    display_en: str
    display_ru: str
    probabilities: dict[str, float]
    ood_score: float
    ood: bool
    ood_reasons: list[str] = field(default_factory=list)
    screening: dict | None = None  # normal vs impaired, where the task defines it (Task.screening)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Predictor:
    def __init__(self, model: torch.nn.Module, card: dict, device: str | torch.device = "cpu"):
        self.model = model.eval()
        self.card = card
        self.device = torch.device(device)
        self.task: Task = get_task(card["task"])
        self.role: str = card.get("role", card["arch"])
        self.temperature: float = float(card.get("calibration", {}).get("temperature", 1.0))
        ood = card.get("ood", {})
        self.ood_threshold: float | None = ood.get("threshold")

    @classmethod
    def from_weights(cls, path: str | Path, device: str | torch.device = "cpu") -> Predictor:
        model, card = load_model(path, device)
        return cls(model, card, device)

    @classmethod
    def from_shipped(cls, task: str, role: str = "student", device: str | torch.device = "cpu") -> Predictor:
        return cls.from_weights(shipped_weights(task, role), device)

    @property
    def name(self) -> str:
        return f"{self.task.name}/{self.role}:{self.card['arch']}"

    @property
    def version(self) -> str:
        return self.card.get("version", "unknown")

    @torch.inference_mode()
    def logits(self, images: np.ndarray) -> torch.Tensor:
        """N x 224 x 224 x 3 uint8 -> N x C raw logits (float32, on the CPU)."""
        x = normalize(images, self.device)
        return self.model(x).float().cpu()

    def predict(self, images: np.ndarray | list[np.ndarray]) -> list[Prediction]:
        images = np.stack(images) if isinstance(images, list) else images
        if images.ndim == 3:
            images = images[None]
        logits = self.logits(images)
        probs = torch.softmax(logits / self.temperature, dim=1).numpy()
        scores = energy_score(logits).numpy()
        return [self._prediction(p, float(s), image_checks(img)) for p, s, img in zip(probs, scores, images)]

    def aggregate(self, predictions: list[Prediction], probabilities: np.ndarray | None = None) -> Prediction:
        """Subject-level result: the mean of the slices' calibrated probabilities, or ``probabilities`` from a
        subject-level model (see diseaseid.serving.study); the OOD verdict is the slices' majority either way."""
        probs = probabilities if probabilities is not None else np.mean(
            [[p.probabilities[c] for c in self.task.classes] for p in predictions], axis=0)
        score = float(np.mean([p.ood_score for p in predictions]))
        reasons = sorted({r for p in predictions for r in p.ood_reasons})
        out = self._prediction(probs, score, reasons)
        out.ood = sum(p.ood for p in predictions) * 2 > len(predictions)
        return out

    def _prediction(self, probs: np.ndarray, score: float, reasons: list[str]) -> Prediction:
        i = int(np.argmax(probs))
        if self.ood_threshold is not None and score > self.ood_threshold:
            reasons = [*reasons, f"unusual for this model (energy {score:.2f} > {self.ood_threshold:.2f})"]
        return Prediction(
            label_index=i,
            label=self.task.classes[i],
            display_en=self.task.display(i, "en"),
            display_ru=self.task.display(i, "ru"),
            probabilities={c: float(p) for c, p in zip(self.task.classes, probs)},
            ood_score=score,
            ood=bool(reasons),
            ood_reasons=list(reasons),
            screening=self.task.screening(probs),
        )
