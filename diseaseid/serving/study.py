"""Subject-level answers from all of a subject's slices: the subject-level head (``weights/<task>/mil.*``: an
attention-MIL head or a pooled head) over the embeddings of the slice model its card names (``backbone``), where a
task ships one.

The head was trained on stacks of consecutive axial slices, lowest first, with each slice's relative height
(0 = lowest, 1 = highest) as an input. A study is read in the order its slices are given: that order is the
stack order. The head is meant for whole stacks (32 slices in training); fewer still work, with less to go on.

``answer_study`` is the whole study path: per-slice predictions, then the subject-level result from the slices
not flagged as out-of-distribution only (each flagged slice is reported and left out; when all are, the
subject gets no diagnosis). Every slice goes through each network it needs once, in batches (one, or one per
inference thread, side by side), and when the answering model is the head's backbone its pass
gives the head its embeddings too: no slice is run twice, decoded twice or calibrated twice. The inference
service answers a study's slices with the head's backbone unless asked for another model, so that a study
costs one network (and the OOD detector every answer runs) per slice, as a single-slice request does.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diseaseid.cards import read_card
from diseaseid.paths import weights_dir
from diseaseid.serving.predictor import Prediction, Predictor, softmax
from diseaseid.serving.runtime import torch_module

log = logging.getLogger(__name__)


class BackboneMismatch(RuntimeError):
    """The MIL head was trained on another slice model's embeddings than the one offered."""


def shipped_mil(task: str) -> Path | None:
    """``weights/<task>/mil.safetensors`` where the task ships a subject-level head, else None."""
    path = weights_dir() / task / "mil.safetensors"
    return path if path.exists() else None


def study_backbone_role(task: str) -> str | None:
    """The role of the slice model whose embeddings the task's shipped study head reads (its card's
    ``backbone.file``: ``teacher.safetensors`` -> ``teacher``), or None where the task ships no head."""
    path = shipped_mil(task)
    if path is None:
        return None
    return Path(read_card(path)["backbone"]["file"]).stem


@dataclass
class StudyResult:
    probabilities: np.ndarray  # C, softmax of the head's logits
    attention: np.ndarray  # N, how much each slice weighed in the answer (sums to 1)


class StudyModel:
    """The attention-MIL head bound to the slice model whose embeddings it reads. ``head``: the PyTorch module,
    or its exported graph's runtime (``diseaseid.serving.export.cached_graph(..., head=True)``; anything with
    ``run_arrays``), which a backbone served by a graph runtime gets: then no torch is needed."""

    def __init__(self, head, card: dict, backbone: Predictor):
        expected = (card.get("backbone") or {}).get("sha256")
        actual = backbone.card.get("weights_sha256")
        if expected and actual and expected != actual:
            raise BackboneMismatch(
                f"MIL head {card.get('version')} was trained on embeddings of slice model {expected[:12]}, "
                f"not {actual[:12]} ({backbone.name}); retrain it with `diseaseid train-mil`")
        if list(card["classes"]) != list(backbone.task.classes):
            raise BackboneMismatch(f"MIL head classes {card['classes']} differ from the task's")
        self.graph = hasattr(head, "run_arrays")
        self.head = head if self.graph else head.eval().to(backbone.device)
        self.card = card
        self.backbone = backbone
        self.temperature = float(card.get("calibration", {}).get("temperature", 1.0))

    @classmethod
    def from_weights(cls, path: str | Path, backbone: Predictor) -> StudyModel:
        """The head on the backbone's kind of runtime: its exported graph beside a backbone served by a graph (under
        the backbone's runtime: OpenVINO, or ONNX Runtime), else (or where the graph cannot be had) the PyTorch
        module."""
        if backbone.runtime.name != "torch":
            try:
                from diseaseid.serving.export import HEAD_OUTPUTS, cached_graph
                from diseaseid.serving.runtime import head_runtime

                graph = cached_graph(path, head=True)
                runtime = head_runtime(backbone.runtime.name, graph.path, backbone.device_type, graph.sha256,
                                       HEAD_OUTPUTS)
                return cls(runtime, read_card(path), backbone)
            except Exception as exc:  # a head the exporter cannot trace at every N, no graph runtime, ...
                log.error("the subject-level head %s runs on PyTorch: its graph failed (%s: %s)", path,
                          type(exc).__name__, exc)
        torch_module()
        from diseaseid.models.checkpoint import load_model

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

    def embed(self, images: np.ndarray, batch_size: int | None = None):
        """N x 224 x 224 x 3 uint8 -> N x F pooled penultimate features of the backbone (the same as
        ``diseaseid.models.mil.slice_features``, through the backbone's runtime), ``batch_size`` slices a pass
        (None: all at once), as a float32 torch tensor."""
        return torch_module().from_numpy(self._embed(images, batch_size))

    def _embed(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        step = batch_size or max(1, len(images))
        return np.concatenate([self.backbone.features_and_logits(images[s:s + step])[0].astype(np.float32)
                               for s in range(0, len(images), step)])

    def predict(self, images: np.ndarray) -> StudyResult:
        """The slices of one subject, in stack order (lowest first)."""
        if images.ndim == 3:
            images = images[None]
        if len(images) == 0:
            raise ValueError("a study needs at least one slice")
        return self.predict_embedded(self._embed(images))

    def predict_embedded(self, feats) -> StudyResult:
        """The head over the backbone's embeddings (N x F, numpy or torch) of one subject's slices, in stack
        order."""
        if self.graph:
            x = np.asarray(feats, np.float32)[None]
            pos = np.linspace(0.0, 1.0, x.shape[1], dtype=np.float32)[None]  # one slice: position 0
            logits, attention = self.head.run_arrays({"feats": x, "pos": pos})
        else:
            torch = torch_module()
            with torch.inference_mode():
                x = torch.as_tensor(feats, dtype=torch.float32, device=self.backbone.device)[None]
                pos = torch.linspace(0.0, 1.0, x.shape[1], device=x.device)[None]  # one slice: position 0
                logits, attention = self.head(x, pos, return_attention=True)
                logits, attention = logits.float().cpu().numpy(), attention.float().cpu().numpy()
        probs = softmax(np.asarray(logits, np.float32) / np.float32(self.temperature))[0]
        return StudyResult(probabilities=probs, attention=np.asarray(attention[0], np.float32))


@dataclass
class StudyAnswer:
    slices: list[Prediction]  # one per slice, in the order given
    subject: Prediction  # from the ``used`` slices only; no diagnosis when there are none
    used: list[int]  # indices of the slices the subject-level result rests on
    excluded: list[int]  # indices of the slices flagged as not brain MRI, left out
    method: str  # "mean" or the subject-level head's method
    attention: np.ndarray | None  # N, each slice's weight in the head's answer (0 for excluded slices)


# Slices per pass on a CPU. Measured on the 2-core development machine (dementia teacher and the tumor student
# detector on ONNX Runtime, one intra-op thread, 32 fixture slices, process CPU time of ``answer_study``, median
# of 4 interleaved rounds): batches of 2 cost 573 ms, 3 574, 4 599, 16 702 (the 16-slice batches the study
# used to run, one per inference thread): a large batch's activations outgrow the caches, so more, smaller
# batches on the same threads cost less; a GPU wants its batch whole.
CPU_STUDY_BATCH = 2


def study_batches(n: int, parts: int) -> int:
    """The batch size that splits ``n`` slices into at most ``parts`` batches of nearly equal size."""
    return max(1, -(-n // max(1, parts)))


def study_batch_size(n: int, parts: int, device_type: str = "cpu") -> int:
    """Slices per pass for a study of ``n`` slices on ``parts`` inference threads: on a CPU at most
    ``CPU_STUDY_BATCH`` (the threads take the batches in turn), elsewhere ``study_batches(n, parts)``."""
    whole = study_batches(n, parts)
    return min(whole, CPU_STUDY_BATCH) if device_type == "cpu" else whole


def answer_study(predictor: Predictor, images: np.ndarray | list[np.ndarray], study: StudyModel | None = None,
                 batch_size: int | None = None, map_batches: Callable = map) -> StudyAnswer:
    """The slices of one subject (stack order) -> per-slice predictions and one subject-level result: the
    ``study`` head over the unflagged slices (kept in their order), or the mean of their probabilities.
    ``batch_size`` slices go through a network at once (None: all of them, one pass); ``map_batches(fn,
    batches)`` runs ``fn`` over the batches and gives their results in order: the builtin ``map`` one after
    another, a thread pool's ``map`` side by side (the runtimes' sessions are safe to share between threads)."""
    images = np.stack(images) if isinstance(images, list) else images
    if images.ndim == 3:
        images = images[None]
    # The head reads its backbone's embeddings: when that is the answering model, from the same pass.
    shared = study is not None and study.backbone is predictor
    step = batch_size or max(1, len(images))

    def one_batch(batch: np.ndarray) -> tuple[list[Prediction], np.ndarray | None]:
        predictions, feats = predictor.predict_with_features(batch, keep_features=shared)
        if study is not None and not shared:  # another network: its embeddings of the same batch
            feats = study.backbone.features_and_logits(batch)[0]
        return predictions, feats

    parts = list(map_batches(one_batch, [images[b:b + step] for b in range(0, len(images), step)]))
    slices = [p for predictions, _ in parts for p in predictions]
    used = [i for i, p in enumerate(slices) if not p.ood]
    excluded = [i for i, p in enumerate(slices) if p.ood]
    probabilities, attention = None, None
    if study is not None and used:
        result = study.predict_embedded(np.concatenate([feats for _, feats in parts])[used])
        probabilities = result.probabilities
        attention = np.zeros(len(images), np.float32)
        attention[used] = result.attention
    method = study.method if study is not None else "mean"
    return StudyAnswer(slices, predictor.aggregate(slices, probabilities), used, excluded, method, attention)
