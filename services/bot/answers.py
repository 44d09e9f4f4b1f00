"""What the bot reads from the services' JSON, parsed leniently so small contract drift does not crash it."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


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
class Conclusion:
    """A slice-level or subject-level answer of the inference service."""

    task: str
    label: str
    display_en: str
    display_ru: str
    probabilities: dict[str, float]
    model_name: str = ""
    model_version: str = ""
    model_role: str = ""  # student or teacher: what the explain job is asked to use too
    ood: bool = False
    ood_score: float | None = None
    ood_reasons: tuple[str, ...] = ()
    n_slices: int = 1
    screening: dict[str, Any] | None = None  # tasks with a screening answer: impaired_probability, display_*
    key_slice: int | None = None  # studies: index (in the files sent) of the slice that weighed most
    # False when the service gave no diagnosis (outcome not_a_brain_mri, wrong_task or one the bot does not know).
    diagnosis: bool = True
    outcome: str = "diagnosis"
    suited_task: str = ""  # wrong_task: the task whose slices the image looks like
    excluded: tuple[int, ...] = ()  # studies: indices of the slices flagged as not brain MRI and left out
    # studies: signs that the slices may not be one stack ({"code", "message", "slices"}; /predict/study)
    warnings: tuple[dict[str, Any], ...] = ()
    # Every class's display names, from the task registry (GET /models); the services name the winner only.
    class_names: ClassNames = field(default_factory=dict, repr=False, compare=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def display(self, lang: str) -> str:
        return (self.display_ru if lang == "ru" else self.display_en) or self.label

    def class_display(self, cls: str, lang: str) -> str:
        """A class's display name as the task registry gives it; the class name itself when unknown."""
        names = self.class_names.get(cls) or {}
        return names.get(lang) or names.get("en") or cls


def _model_info(data: dict[str, Any]) -> tuple[str, str, str]:
    model = data.get("model")
    if isinstance(model, dict):
        return str(model.get("name", "")), str(model.get("version", "")), str(model.get("role", ""))
    if isinstance(model, str):
        return model, str(data.get("model_version", "")), ""
    return "", "", ""


def _ood_info(data: dict[str, Any]) -> tuple[bool, float | None, tuple[str, ...]]:
    ood = data.get("ood")
    if isinstance(ood, dict):
        flag, score, reasons = ood.get("flag", False), ood.get("score"), ood.get("reasons") or ()
    else:  # the flat shape of Prediction.to_dict()
        flag, score, reasons = ood or False, data.get("ood_score"), data.get("ood_reasons") or ()
    if isinstance(reasons, str):
        reasons = (reasons,)
    return bool(flag), (float(score) if score is not None else None), tuple(str(r) for r in reasons)


def parse_conclusion(data: dict[str, Any], *, task: str = "", n_slices: int = 1,
                     defaults: dict[str, Any] | None = None, class_names: ClassNames | None = None) -> Conclusion:
    """Build a Conclusion from one prediction object; `defaults` fills fields the object leaves out."""
    merged = {**(defaults or {}), **data}
    name, version, role = _model_info(merged)
    flag, score, reasons = _ood_info(merged)
    probabilities = {str(k): float(v) for k, v in (merged.get("probabilities") or {}).items()}
    # No diagnosis: the service says so (any outcome but "diagnosis", including one this bot does not know yet),
    # or it flags the image and gives no label.
    outcome = str(merged.get("outcome") or "diagnosis")
    diagnosis = outcome == "diagnosis" and not (flag and "label" in merged and merged["label"] is None)
    if diagnosis:
        label = str(merged.get("label") or (max(probabilities, key=probabilities.get) if probabilities else "?"))
    else:
        label = ""
    return Conclusion(
        task=str(merged.get("task") or task), label=label,
        display_en=str(merged.get("display_en") or label), display_ru=str(merged.get("display_ru") or label),
        probabilities=probabilities, model_name=name, model_version=version, model_role=role,
        ood=flag, ood_score=score, ood_reasons=reasons,
        n_slices=int(merged.get("n_slices") or n_slices), raw=data,
        screening=merged.get("screening") if isinstance(merged.get("screening"), dict) and diagnosis else None,
        diagnosis=diagnosis, outcome=outcome, suited_task=str(merged.get("suited_task") or ""),
        class_names=dict(class_names or {}),
    )


# Keys under which a study response may carry the subject-level result, most specific first.
_SUBJECT_KEYS = ("subject", "aggregate", "aggregated", "study", "result")
_SLICE_KEYS = ("slices", "predictions", "per_slice", "results")


def parse_study(data: dict[str, Any], *, task: str, n_files: int, class_names: ClassNames | None = None
                ) -> Conclusion:
    """The subject-level conclusion of a `/predict/study` response."""
    slices = next((data[k] for k in _SLICE_KEYS if isinstance(data.get(k), list)), None)
    n_slices = len(slices) if slices is not None else n_files
    subject = next((data[k] for k in _SUBJECT_KEYS if isinstance(data.get(k), dict)), None)
    # Top-level fields (task, model, ...) stand in for what the subject object leaves out.
    defaults = {k: v for k, v in data.items() if k not in _SUBJECT_KEYS + _SLICE_KEYS}
    conclusion = parse_conclusion(subject if subject is not None else data, task=task, n_slices=n_slices,
                                  defaults=defaults, class_names=class_names)
    excluded = _excluded(data, slices)
    key = key_slice(data, slices, conclusion.label, n_slices, excluded) if conclusion.diagnosis else None
    warnings = tuple(w for w in data.get("warnings") or () if isinstance(w, dict) and isinstance(w.get("code"), str))
    # ``model`` names what produced the subject answer (the subject-level head, role "mil"); the key slice's
    # heatmaps are asked of the model that answered the slices (``slice_model``).
    slice_model = data.get("slice_model")
    role = str(slice_model.get("role", "")) if isinstance(slice_model, dict) else conclusion.model_role
    return replace(conclusion, key_slice=key, excluded=excluded, warnings=warnings, model_role=role)


def _excluded(data: dict[str, Any], slices: list | None) -> tuple[int, ...]:
    """Indices of the slices left out of the subject-level result: the response's ``excluded``, else the
    slices it marks unused or flagged."""
    try:
        if isinstance(data.get("excluded"), list):
            return tuple(sorted(int(i) for i in data["excluded"]))
        return tuple(i for i, s in enumerate(slices or ()) if isinstance(s, dict) and (
            s.get("used") is False or s.get("outcome") not in (None, "diagnosis")))
    except (TypeError, ValueError):
        return ()


def key_slice(data: dict[str, Any], slices: list | None, label: str, n_slices: int,
              excluded: tuple[int, ...] = ()) -> int | None:
    """The slice to show heatmaps of: the highest attention weight where a subject-level head answered,
    else the slice most confident in the subject's label; never an ``excluded`` slice; None when the response
    says neither."""
    aggregation = data.get("aggregation")
    attention = aggregation.get("attention") if isinstance(aggregation, dict) else None
    candidates = [i for i in range(n_slices) if i not in excluded]
    try:
        if isinstance(attention, list) and len(attention) == n_slices and attention:
            return max(candidates, key=lambda i: float(attention[i])) if candidates else None
        scores = {i: float((s.get("probabilities") or {})[label]) for i, s in enumerate(slices or ())
                  if i not in excluded}
    except (TypeError, ValueError, KeyError, AttributeError):
        return None
    return max(scores, key=scores.__getitem__) if scores else None


@dataclass(frozen=True)
class ExplainImages:
    """The pictures of one finished explain job, in the order they are shown."""

    job_id: str
    images: dict[str, bytes]  # "gradcam", "lrp", "panel" -> PNG bytes
    model_name: str = ""
    target_en: str = ""  # display name of the class the maps explain
    target_ru: str = ""

    def target(self, lang: str) -> str:
        return self.target_ru if lang == "ru" and self.target_ru else self.target_en
