"""The conclusion message: label, a text bar chart of the probabilities, the model, an OOD warning; for an
image that is not a brain MRI slice, that first and no diagnosis."""
from __future__ import annotations

from html import escape

from diseaseid.percent import percent
from services.bot.texts import t, task_name
from services.bot.views import ConclusionView

BAR_WIDTH = 10


def bar(p: float, width: int = BAR_WIDTH) -> str:
    """A fixed-width bar: full blocks for the rounded share, light shade for the rest."""
    filled = max(0, min(width, round(p * width)))
    return "█" * filled + "░" * (width - filled)


def probability_chart(c: ConclusionView, lang: str) -> str:
    """Classes sorted by probability, under their registry display names, padded so the bars line up in a
    monospace block."""
    rows = sorted(c.probabilities.items(), key=lambda kv: kv[1], reverse=True)
    names = [c.class_display(cls, lang) for cls, _ in rows]
    pad = max((len(n) for n in names), default=0)
    lines = [f"{name:<{pad}} {bar(p)} {percent(p, 1):>6}" for name, (_, p) in zip(names, rows, strict=True)]
    return "<pre>" + escape("\n".join(lines)) + "</pre>"


def _reasons(c: ConclusionView) -> str:
    return f" ({escape('; '.join(c.ood_reasons))})" if c.ood_reasons else ""


def _model_line(c: ConclusionView, lang: str) -> list[str]:
    if not c.model_name:
        return []
    return [t("model_line", lang, model=escape(c.model_name + (f" ({c.model_version})" if c.model_version else "")))]


def not_mri_text(c: ConclusionView, lang: str, *, study: bool = False) -> str:
    """An image (or every image of a study) that is not a brain MRI slice: that first, and no diagnosis, no
    probability chart."""
    if c.outcome == "wrong_task" and c.suited_task:  # a brain MRI slice, of the kind another task reads
        names = {"task": escape(task_name(c.task, lang)), "other": escape(task_name(c.suited_task, lang))}
        title = (t("wrong_task_study_title", lang, n=c.n_slices, reasons=_reasons(c), **names) if study
                 else t("wrong_task_title", lang, reasons=_reasons(c), **names))
    else:
        title = (t("not_mri_study_title", lang, n=c.n_slices, reasons=_reasons(c)) if study
                 else t("not_mri_title", lang, reasons=_reasons(c)))
    return "\n".join([title, t("task_line", lang, task=escape(task_name(c.task, lang))), *_model_line(c, lang),
                      t("disclaimer_short", lang)])


def excluded_line(c: ConclusionView, lang: str) -> str:
    """Which slices of a study were left out (numbered from 1, as the album shows them)."""
    numbers = t("slice_numbers", lang, numbers=", ".join(str(i + 1) for i in c.excluded))
    return t("study_excluded", lang, k=len(c.excluded), n=c.n_slices, which=numbers)


def conclusion_text(c: ConclusionView, lang: str, *, study: bool = False) -> str:
    if not c.diagnosis:
        return not_mri_text(c, lang, study=study)
    label = escape(c.display(lang))
    if study:
        title = t("study_title", lang, n=c.n_slices, label=label)
    else:
        title = t("conclusion_title", lang, label=label)
    parts = [title]
    if study and c.excluded:
        parts.append(excluded_line(c, lang))
    parts.append(t("task_line", lang, task=escape(task_name(c.task, lang))))
    if c.probabilities:
        parts.append(probability_chart(c, lang))
    if c.screening is not None:
        answer = c.screening.display_ru if lang == "ru" else c.screening.display_en
        parts.append(t("screening_line", lang, answer=escape(answer), p=percent(c.screening.impaired_probability)))
        if not study:
            parts.append(t("single_slice_weak", lang))
    parts += _model_line(c, lang)
    if c.ood:  # flagged yet a diagnosis (no service of ours answers so): warn all the same
        parts.append(t("ood_warning", lang, reasons=_reasons(c)))
    parts.append(t("disclaimer_short", lang))
    return "\n".join(parts)
