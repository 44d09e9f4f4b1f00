"""``Annotated`` dependencies, so that a route's signature reads like its contract.

They are ``async`` on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, which would cost
three thread hops per request for nothing but attribute lookups.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.common.uploads import DecodeGate
from services.inference.metrics import InferenceMetrics
from services.inference.settings import InferenceSettings
from services.inference.store import ModelStore


async def get_settings(request: Request) -> InferenceSettings:
    return request.app.state.settings


async def get_store(request: Request) -> ModelStore:
    return request.app.state.store


async def get_metrics(request: Request) -> InferenceMetrics:
    return request.app.state.metrics


async def get_decode_gate(request: Request) -> DecodeGate:
    return request.app.state.decode_gate


SettingsDep = Annotated[InferenceSettings, Depends(get_settings)]
StoreDep = Annotated[ModelStore, Depends(get_store)]
MetricsDep = Annotated[InferenceMetrics, Depends(get_metrics)]
GateDep = Annotated[DecodeGate, Depends(get_decode_gate)]
