"""``Annotated`` dependencies, so that a route's signature reads like its contract."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.inference.metrics import InferenceMetrics
from services.inference.settings import InferenceSettings
from services.inference.store import ModelStore


def get_settings(request: Request) -> InferenceSettings:
    return request.app.state.settings


def get_store(request: Request) -> ModelStore:
    return request.app.state.store


def get_metrics(request: Request) -> InferenceMetrics:
    return request.app.state.metrics


SettingsDep = Annotated[InferenceSettings, Depends(get_settings)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
MetricsDep = Annotated[InferenceMetrics, Depends(get_metrics)]
