"""What this server can answer: tasks, their classes, and the models with their cards."""
from __future__ import annotations

from fastapi import APIRouter

from diseaseid.cards import read_card
from diseaseid.serving import ROLES, shipped_mil, shipped_weights
from diseaseid.tasks import TASKS
from services.inference.deps import ModelsDep, SettingsDep
from services.inference.model_runner import ModelRunner
from services.inference.schemas import ModelsResponse

router = APIRouter(tags=["models"])


def _card(task: str, role: str, models: ModelRunner) -> dict:
    predictor = models.pool.loaded(task, role)
    if predictor is not None:
        return predictor.card
    try:  # not loaded (yet): describe it from disk
        return read_card(shipped_weights(task, role))
    except Exception:
        return {}


def _study_model(task: str, models: ModelRunner) -> dict | None:
    """The subject-level head `/predict/study` uses for this task, if it ships one."""
    study = models.study_model(task)
    if study is not None:
        card = study.card
    elif (path := shipped_mil(task)) is not None:
        card = read_card(path)
    else:
        return None
    return {"name": f"{task}/mil:{card.get('arch', '')}", "version": str(card.get("version", "unknown")),
            "loaded": study is not None, "card": card}


@router.get("/models", response_model=ModelsResponse)
async def list_models(models: ModelsDep, settings: SettingsDep) -> dict:
    """Tasks, classes (with English and Russian names) and every model with its model card and metrics."""
    tasks = []
    for name, task in TASKS.items():
        choice = settings.default_choice(name)
        default = choice.role
        entries = []
        for role in ROLES:
            card = _card(name, role, models)
            arch = str(card.get("arch", ""))
            entries.append({"role": role, "name": f"{name}/{role}:{arch}", "arch": arch,
                           "version": str(card.get("version", "unknown")), "default": role == default,
                           "loaded": models.pool.loaded(name, role) is not None, "card": card})
        tasks.append({
            "name": name, "description": task.description, "subject_level": task.subject_level,
            "classes": [{"name": c, "display_en": task.display(i, "en"), "display_ru": task.display(i, "ru")}
                        for i, c in enumerate(task.classes)],
            "models": entries,
            "default_model": {"role": default, "reason": choice.reason},
            "study_model": _study_model(name, models),
        })
    return {"tasks": tasks}
