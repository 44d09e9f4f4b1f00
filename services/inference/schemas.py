"""Response bodies of the inference service besides its answers: what it serves (``GET /models``) and its
health. The answers themselves (``/predict``, ``/predict/study``) are ``diseaseid.answers``, shared with the
explain service and the clients."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from diseaseid.answers import AggregationModel, ModelRef


class ClassInfo(BaseModel):
    name: str
    display_en: str
    display_ru: str


class ModelInfo(ModelRef):
    default: bool = Field(description="Answers requests that name no model")
    loaded: bool
    card: dict[str, Any] = Field(description="The model card: training data, metrics, calibration, OOD")


class StudyModelInfo(AggregationModel):
    loaded: bool
    card: dict[str, Any]


class DefaultModelInfo(BaseModel):
    role: str = Field(description="The model that answers requests naming none")
    reason: str = Field(description="Why: the most accurate on validation (a tie goes to the student), unless "
                                    "the student is within 0.5 points of it and faster to serve, or an operator's "
                                    "setting")


class TaskInfo(BaseModel):
    name: str
    description: str
    subject_level: bool = Field(description="Meant to be used per subject via /predict/study")
    classes: list[ClassInfo]
    models: list[ModelInfo]
    default_model: DefaultModelInfo
    study_model: StudyModelInfo | None = Field(None, description="Subject-level head behind /predict/study")


class ModelsResponse(BaseModel):
    tasks: list[TaskInfo]


class Health(BaseModel):
    status: str
    models_loaded: int = 0
