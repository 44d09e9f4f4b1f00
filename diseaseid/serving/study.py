"""Subject-level answers from all of a subject's slices: the attention-MIL head (``weights/<task>/mil.*``)
over the slice teacher's embeddings, where a task ships one.

The head was trained on stacks of consecutive axial slices, lowest first, with each slice's relative height
(0 = lowest, 1 = highest) as an input. A study is read in the order its slices are given: that order is the
stack order. The head is meant for whole stacks (32 slices in training); fewer still work, with less to go on.

``answer_study`` is the whole study path: per-slice predictions, then the subject-level result from the slices
not flagged as out-of-distribution only (each flagged slice is reported and left out; when all are, the
subject gets no diagnosis). All slices go through each network in one batch, and when the answering model is
the head's backbone (the teacher) its pass gives the head its embeddings too: no slice is run twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diseaseid.models.checkpoint import load_model
from diseaseid.paths import weights_dir
from diseaseid.serving.predictor import Prediction, Predictor


class BackboneMismatch(RuntimeError):
    """The MIL head was trained on another slice model's embeddings than the one offered."""


def shipped_mil(task: str) -> Path | None:
    """``weights/<task>/mil.safetensors`` where the task ships a subject-level head, else None."""
    path = weights_dir() / task / "mil.safetensors"
    return path if path.exists() else None


@dataclass
class StudyResult:
    probabilities: np.ndarray  # C, softmax of the head's logits
    attention: np.ndarray  # N, how much each slice weighed in the answer (sums to 1)


class StudyModel:
    """The attention-MIL head bound to the slice model whose embeddings it reads."""

    def __init__(self, head: torch.nn.Module, card: dict, backbone: Predictor):
        expected = (card.get("backbone") or {}).get("sha256")
        actual = backbone.card.get("weights_sha256")
        if expected and actual and expected != actual:
            raise BackboneMismatch(
                f"MIL head {card.get('version')} was trained on embeddings of slice model {expected[:12]}, "
                f"not {actual[:12]} ({backbone.name}); retrain it with `diseaseid train-mil`")
        if list(card["classes"]) != list(backbone.task.classes):
            raise BackboneMismatch(f"MIL head classes {card['classes']} differ from the task's")
        self.head = head.eval().to(backbone.device)
        self.card = card
        self.backbone = backbone
        self.temperature = float(card.get("calibration", {}).get("temperature", 1.0))

    @classmethod
    def from_weights(cls, path: str | Path, backbone: Predictor) -> StudyModel:
        head, card = load_model(path, backbone.device)
        return cls(head, card, backbone)

    @classmethod
    def from_shipped(cls, task: str, backbone: Predictor) -> StudyModel | None:
        path = shipped_mil(task)
        return None if path is None else cls.from_weights(path, backbone)

    @property
    def name(self) -> str:
        return f"{self.backbone.task.name}/mil:{self.card['arch']}"

    @property
    def method(self) -> str:
        """How the head reads the slices: ``attention_mil``, ``pooled_linear`` or ``pooled_ordinal``."""
        arch = self.card.get("arch", "")
        if arch == "pooled_head":
            return f"pooled_{self.card.get('arch_args', {}).get('kind', 'linear')}"
        return arch

    @property
    def version(self) -> str:
        return self.card.get("version", "unknown")

    def embed(self, images: np.ndarray, batch_size: int | None = None) -> torch.Tensor:
        """N x 224 x 224 x 3 uint8 -> N x F pooled penultimate features of the backbone (the same as
        ``diseaseid.models.mil.slice_features``, through the backbone's runtime), ``batch_size`` slices a pass
        (None: all at once)."""
        step = batch_size or max(1, len(images))
        return torch.cat([torch.from_numpy(self.backbone.features_and_logits(images[s:s + step])[0]).float()
                          for s in range(0, len(images), step)])

    def predict(self, images: np.ndarray) -> StudyResult:
        """The slices of one subject, in stack order (lowest first)."""
        if images.ndim == 3:
            images = images[None]
        if len(images) == 0:
            raise ValueError("a study needs at least one slice")
        return self.predict_embedded(self.embed(images))

    @torch.inference_mode()
    def predict_embedded(self, feats: np.ndarray | torch.Tensor) -> StudyResult:
        """The head over the backbone's embeddings (N x F) of one subject's slices, in stack order."""
        feats = torch.as_tensor(feats, dtype=torch.float32, device=self.backbone.device)[None]
        pos = torch.linspace(0.0, 1.0, feats.shape[1], device=feats.device)[None]  # one slice: position 0
        logits, attention = self.head(feats, pos, return_attention=True)
        probs = torch.softmax(logits.float() / self.temperature, dim=1)[0].cpu().numpy()
        return StudyResult(probabilities=probs, attention=attention[0].float().cpu().numpy())


@dataclass
class StudyAnswer:
    slices: list[Prediction]  # one per slice, in the order given
    subject: Prediction  # from the ``used`` slices only; no diagnosis when there are none
    used: list[int]  # indices of the slices the subject-level result rests on
    excluded: list[int]  # indices of the slices flagged as not brain MRI, left out
    method: str  # "mean" or the subject-level head's method
    attention: np.ndarray | None  # N, each slice's weight in the head's answer (0 for excluded slices)


def answer_study(predictor: Predictor, images: np.ndarray | list[np.ndarray], study: StudyModel | None = None,
                 batch_size: int | None = None) -> StudyAnswer:
    """The slices of one subject (stack order) -> per-slice predictions and one subject-level result: the
    ``study`` head over the unflagged slices (kept in their order), or the mean of their probabilities.
    ``batch_size`` slices go through a network at once (None: all of them, one pass)."""
    images = np.stack(images) if isinstance(images, list) else images
    if images.ndim == 3:
        images = images[None]
    # The head reads its backbone's embeddings: when that is the answering model, from the same pass.
    shared = study is not None and study.backbone is predictor
    step = batch_size or max(1, len(images))
    slices: list[Prediction] = []
    embedded: list[np.ndarray] = []
    for b in range(0, len(images), step):
        predictions, feats = predictor.predict_with_features(images[b:b + step], keep_features=shared)
        slices += predictions
        if shared:
            embedded.append(feats)
    used = [i for i, p in enumerate(slices) if not p.ood]
    excluded = [i for i, p in enumerate(slices) if p.ood]
    probabilities, attention = None, None
    if study is not None and used:
        result = (study.predict_embedded(np.concatenate(embedded)[used]) if shared
                  else study.predict(images[used]))
        probabilities = result.probabilities
        attention = np.zeros(len(images), np.float32)
        attention[used] = result.attention
    method = study.method if study is not None else "mean"
    return StudyAnswer(slices, predictor.aggregate(slices, probabilities), used, excluded, method, attention)
