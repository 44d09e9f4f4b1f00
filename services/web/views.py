"""The services' answers as the page shows them: localized lines and a bar per class, made on the server so
that the page's script only places text (``textContent``, never HTML) and the wording lives in one module.

Rules a reader relies on:

- An answer whose ``outcome`` is anything but ``diagnosis`` (``not_a_brain_mri``; a later ``wrong_task``; any
  outcome this page does not know yet) is a refusal: no label, no class probabilities, no heatmaps, the
  service's own words first.
- Probabilities are calibrated but never certain: the page never prints 100% or 0% (``>99%``, ``<1%``).
"""
from __future__ import annotations

from typing import Any

from diseaseid.percent import percent  # whole percentages: ``>99%`` and ``<1%`` at the ends, never 100% or 0%
from services.web.texts import t, task_name

DIAGNOSIS = "diagnosis"
# Where an answer may carry its own words for a refusal, most specific first (display_* say it today).
_MESSAGE_FIELDS = ("message_{lang}", "notice_{lang}", "display_{lang}", "message", "notice")


def class_names(models: dict[str, Any], task: str) -> dict[str, dict[str, str]]:
    """``class -> {"en", "ru"}`` display names from a ``GET /models`` body (empty when it lacks the task)."""
    for info in models.get("tasks") or ():
        if isinstance(info, dict) and info.get("name") == task:
            return {str(c["name"]): {"en": str(c.get("display_en") or c["name"]),
                                     "ru": str(c.get("display_ru") or c["name"])}
                    for c in info.get("classes") or () if isinstance(c, dict) and "name" in c}
    return {}


def subject_level(models: dict[str, Any], task: str) -> bool:
    """Whether ``task`` is meant to be answered per subject (a whole study); dementia when /models is unread."""
    for info in models.get("tasks") or ():
        if isinstance(info, dict) and info.get("name") == task:
            return bool(info.get("subject_level"))
    return task == "dementia"


def is_diagnosis(conclusion: dict[str, Any]) -> bool:
    return (conclusion.get("outcome") or DIAGNOSIS) == DIAGNOSIS and conclusion.get("label") is not None


def _refusal_words(conclusion: dict[str, Any], lang: str) -> str:
    for field in _MESSAGE_FIELDS:
        value = conclusion.get(field.format(lang=lang))
        if isinstance(value, str) and value.strip():
            return value.strip()
    return t("refusal_title", lang)


def refusal(conclusion: dict[str, Any], lang: str, *, n_slices: int = 1, study: bool = False) -> dict[str, str]:
    outcome = conclusion.get("outcome") or "unknown"
    if outcome == "not_a_brain_mri":
        message = t("refusal_not_a_brain_mri_study", lang, n=n_slices) if study else t("refusal_not_a_brain_mri",
                                                                                        lang)
    elif outcome == "wrong_task":
        message = t("refusal_wrong_task", lang)
    else:
        message = t("refusal_other", lang)
    return {"title": _refusal_words(conclusion, lang), "message": message}


def key_slice(answer: dict[str, Any], label: str) -> int | None:
    """The study slice whose heatmaps to show: the highest attention weight where the subject-level head gave
    weights, else the slice most sure of the subject's label; never a slice left out."""
    slices = answer.get("slices") or []
    used = [i for i, s in enumerate(slices) if isinstance(s, dict) and s.get("used", True)
            and i not in (answer.get("excluded") or ())]
    if not used:
        return None
    attention = (answer.get("aggregation") or {}).get("attention")
    if isinstance(attention, list) and len(attention) == len(slices):
        return max(used, key=lambda i: float(attention[i]))
    return max(used, key=lambda i: float((slices[i].get("probabilities") or {}).get(label, 0.0)))


def conclusion_view(answer: dict[str, Any], *, task: str, lang: str, files: list[str],
                    models: dict[str, Any]) -> dict[str, Any]:
    """What the page shows for a ``/predict`` or ``/predict/study`` answer (``files``: the names, as sent)."""
    study = isinstance(answer.get("subject"), dict)
    conclusion = answer["subject"] if study else answer
    n = int(answer.get("n_slices") or len(files) or 1)
    model = answer.get("model") if isinstance(answer.get("model"), dict) else {}
    view: dict[str, Any] = {
        "kind": "study" if study else "slice",
        "outcome": conclusion.get("outcome") or DIAGNOSIS,
        "diagnosis": is_diagnosis(conclusion),
        "task": t("task_line", lang, task=task_name(task, lang)),
        "model": t("model_line", lang, name=model.get("name", "?"), version=model.get("version", "?")),
        "notice": t("notice_short", lang),
        "notes": [],
    }
    excluded = set(answer.get("excluded") or ())
    if study:
        view["slices_heading"] = t("slices_read", lang)
        view["files"] = [{"number": i + 1, "name": name,
                          "note": t("left_out", lang) if i in excluded else ""} for i, name in enumerate(files)]
    if not view["diagnosis"]:
        view["refusal"] = refusal(conclusion, lang, n_slices=n, study=study)
        return view

    names = class_names(models, task)
    label = str(conclusion["label"])
    display = str(conclusion.get(f"display_{lang}") or names.get(label, {}).get(lang) or label)
    view["label"] = display
    view["title"] = t("study_conclusion", lang, n=n, label=display) if study else t("conclusion", lang,
                                                                                     label=display)
    view["probabilities_heading"] = t("probabilities", lang)
    rows = sorted((conclusion.get("probabilities") or {}).items(), key=lambda kv: kv[1], reverse=True)
    view["probabilities"] = [{"name": names.get(cls, {}).get(lang) or cls, "percent": percent(p),
                              "share": round(float(p), 4), "top": cls == label} for cls, p in rows]
    screening = conclusion.get("screening")
    if isinstance(screening, dict) and "impaired_probability" in screening:
        answer_text = screening.get(f"display_{lang}") or screening.get("display_en") or ""
        view["screening"] = t("screening", lang, answer=answer_text,
                              p=percent(screening["impaired_probability"]))
    if study and excluded:
        which = ", ".join(str(i + 1) for i in sorted(excluded))
        view["notes"].append(t("excluded", lang, k=len(excluded), n=n, which=which))
    if not study and subject_level(models, task):
        view["notes"].append(t("single_slice_weak", lang))
    if (conclusion.get("ood") or {}).get("flag"):  # a service that flags and still labels: warn
        view["notes"].append(t("ood_warning", lang))
    return view


def dicom_offer(dicom: bool, lang: str) -> dict[str, Any]:
    """What the page offers as DICOM beside the conclusion: for an upload of DICOM files only, the answer as the
    inference service's SR (``api/dicom/sr``, asked for with the same files when the person wants it); for
    anything else a short note why there is none."""
    if dicom:
        return {"sr": {"url": "api/dicom/sr", "text": t("download_sr", lang), "hint": t("download_sr_hint", lang)}}
    return {"sr_note": t("sr_dicom_only", lang)}


# The DICOM objects of an explanation of a DICOM slice, in the order the page lists them.
EXPLAIN_DICOM = ("gradcam", "lrp", "panel", "sr")


def explain_view(job: dict[str, Any], *, job_id: str, lang: str) -> dict[str, Any]:
    """A ``GET /explain/{id}`` answer as the page shows it: a progress line until it ends, then the overlays
    (URLs on the page's own server) and the panel to download."""
    status = str(job.get("status") or "queued")
    view: dict[str, Any] = {"status": status, "job_id": job_id}
    if status == "queued":
        position = job.get("queue_position")
        view["text"] = (t("explain_queued_position", lang, n=position) if isinstance(position, int) and position > 0
                        else t("explain_queued", lang))
        return view
    if status == "started":
        view["text"] = t("explain_started", lang)
        return view
    result = job.get("result") if isinstance(job.get("result"), dict) else None
    if status != "finished" or result is None:
        view["status"] = "failed"
        view["text"] = t("explain_failed", lang)
        return view
    if (result.get("outcome") or DIAGNOSIS) != DIAGNOSIS:
        # The worker judged this image anew and found no diagnosis to explain: say so, show no maps.
        view["status"] = "refused"
        notice = result.get("notice") if lang == "en" else None  # the worker writes English only
        view["text"] = str(notice or t("refusal_other", lang))
        return view
    target = result.get("target") if isinstance(result.get("target"), dict) else {}
    label = str(target.get(f"display_{lang}") or target.get("display_en") or target.get("label") or "")
    base = f"api/explain/{job_id}"
    methods = result.get("methods") if isinstance(result.get("methods"), dict) else {}
    view["images"] = [{"name": m, "url": f"{base}/{m}.png", "caption": t(f"caption_{m}", lang, label=label)}
                      for m in ("gradcam", "lrp") if m in methods or not methods]
    view["panel_url"] = f"{base}/panel.png"
    view["download"] = t("download_panel", lang)
    # A DICOM slice's job links its heatmaps as DICOM (result.dicom, null for JPEG/PNG): the page's own URLs.
    dicom = result.get("dicom") if isinstance(result.get("dicom"), dict) else {}
    objects = dicom.get("objects") if isinstance(dicom.get("objects"), dict) else {}
    names = [n for n in EXPLAIN_DICOM if n in objects]
    if names:
        view["dicom"] = {"heading": t("heatmaps_dicom", lang),
                         "links": [{"name": n, "url": f"{base}/dicom/{n}.dcm", "text": t(f"dicom_{n}", lang),
                                    "filename": f"diseaseid-{n}.dcm"} for n in names]}
    view["text"] = ""
    return view
