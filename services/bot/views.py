"""What the bot shows of an answer: the services' JSON read with the answers' own models
(``diseaseid.answers``: ``PredictResponse``, ``StudyResponse``, ``ExplainResult``) and turned into one
:class:`ConclusionView`, what the conclusion message is written from. An answer that does not match its model
raises ``pydantic.ValidationError`` (the client says the service is unavailable); nothing is guessed.

Also the two small records the client passes around: :class:`Upload` (an image to send) and
:class:`ExplainImages` (the pictures of a finished explain job).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from diseaseid.answers import (
    Conclusion,
    ExplainResult,
    ModelRef,
    PredictResponse,
    Screening,
    StudyResponse,
    StudyWarningInfo,
)


@dataclass(frozen=True)
class Upload:
    """One image as the bot forwards it: the bytes Telegram gave us plus a name and a media type."""

    filename: str
    content: bytes
    content_type: str = "application/octet-stream"


# A task's class display names as GET /models serves them from the task registry: class -> {"en", "ru"}.
ClassNames = dict[str, dict[str, str]]


def parse_class_names(models: dict[str, Any]) -> dict[str, ClassNames]:
    """task -> its :data:`ClassNames`, from a ``GET /models`` body (what it cannot read is left out)."""
    out: dict[str, ClassNames] = {}
    for task in models.get("tasks") or ():
        if not isinstance(task, dict) or not isinstance(task.get("classes"), list):
            continue
        out[str(task.get("name", ""))] = {
            str(c["name"]): {"en": str(c.get("display_en") or c["name"]), "ru": str(c.get("display_ru") or c["name"])}
            for c in task["classes"] if isinstance(c, dict) and "name" in c}
    return out


@dataclass(frozen=True)
class ConclusionView:
    """A slice-level or subject-level answer of the inference service, as the conclusion message shows it."""

    task: str
    label: str  # "" without a diagnosis
    display_en: str
    display_ru: str
    probabilities: dict[str, float]
    model_name: str
    model_version: str
    model_role: str  # student or teacher: what the explain job is asked to use too
    ood: bool
    ood_reasons: tuple[str, ...]
    diagnosis: bool  # False: outcome not_a_brain_mri or wrong_task (no label, no chart, no heatmaps)
    outcome: str
    suited_task: str = ""  # wrong_task: the task whose slices the image looks like
    screening: Screening | None = None  # tasks with a screening answer (dementia)
    n_slices: int = 1
    key_slice: int | None = None  # studies: index (in the files sent) of the slice that weighed most
    excluded: tuple[int, ...] = ()  # studies: indices of the slices flagged as not brain MRI and left out
    warnings: tuple[StudyWarningInfo, ...] = ()  # studies: signs that the slices may not be one stack
    # Every class's display names, from the task registry (GET /models); the services name the winner only.
    class_names: ClassNames = field(default_factory=dict, repr=False, compare=False)

    def display(self, lang: str) -> str:
        return (self.display_ru if lang == "ru" else self.display_en) or self.label

    def class_display(self, cls: str, lang: str) -> str:
        """A class's display name as the task registry gives it; the class name itself when unknown."""
        names = self.class_names.get(cls) or {}
        return names.get(lang) or names.get("en") or cls


def conclusion_view(answer: Conclusion, *, task: str, model: ModelRef, n_slices: int = 1,
                    class_names: ClassNames | None = None) -> ConclusionView:
    diagnosis = answer.is_diagnosis
    return ConclusionView(
        task=task, label=(answer.label or "") if diagnosis else "", display_en=answer.display_en,
        display_ru=answer.display_ru, probabilities=dict(answer.probabilities), model_name=model.name,
        model_version=model.version, model_role=model.role, ood=answer.ood.flag,
        ood_reasons=tuple(answer.ood.reasons), diagnosis=diagnosis, outcome=answer.outcome,
        suited_task=answer.suited_task or "", screening=answer.screening if diagnosis else None,
        n_slices=n_slices, class_names=dict(class_names or {}))


def read_prediction(body: Any, class_names: ClassNames | None = None) -> ConclusionView:
    """A ``POST /predict`` body."""
    answer = PredictResponse.model_validate(body)
    return conclusion_view(answer, task=answer.task, model=answer.model, class_names=class_names)


def read_study(body: Any, class_names: ClassNames | None = None) -> ConclusionView:
    """A ``POST /predict/study`` body: its subject-level conclusion. ``model`` names what produced it (the
    subject-level head, role "mil"); the key slice's heatmaps are asked of the model that answered the slices
    (``slice_model``), so that is the view's role."""
    answer = StudyResponse.model_validate(body)
    view = conclusion_view(answer.subject, task=answer.task, model=answer.model, n_slices=answer.n_slices,
                           class_names=class_names)
    excluded = tuple(sorted(answer.excluded))
    return replace(view, key_slice=key_slice(answer, view.label, excluded) if view.diagnosis else None,
                   excluded=excluded, warnings=tuple(answer.warnings), model_role=answer.slice_model.role)


def key_slice(answer: StudyResponse, label: str, excluded: tuple[int, ...] = ()) -> int | None:
    """The slice to show heatmaps of: the highest attention weight where a subject-level head answered,
    else the slice most confident in the subject's label; never an ``excluded`` slice."""
    attention = answer.aggregation.attention
    if attention is not None and len(attention) == answer.n_slices:
        candidates = [i for i in range(answer.n_slices) if i not in excluded]
        return max(candidates, key=attention.__getitem__) if candidates else None
    scores = {s.index: s.probabilities.get(label, 0.0) for s in answer.slices if s.index not in excluded}
    return max(scores, key=scores.__getitem__) if scores else None


@dataclass(frozen=True)
class ExplainImages:
    """The pictures of one finished explain job, in the order they are shown."""

    job_id: str
    images: dict[str, bytes]  # "gradcam", "lrp", "panel" -> PNG bytes
    model_name: str = ""
    target_en: str = ""  # display name of the class the maps explain
    target_ru: str = ""

    @classmethod
    def of(cls, job_id: str, images: dict[str, bytes], result: ExplainResult) -> ExplainImages:
        target = result.target
        return cls(job_id=job_id, images=images, model_name=result.model.name,
                   target_en=target.display_en or target.label or "", target_ru=target.display_ru or "")

    def target(self, lang: str) -> str:
        return self.target_ru if lang == "ru" and self.target_ru else self.target_en
