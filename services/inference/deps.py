"""What the inference routes need, as ``Annotated`` dependencies, so that a route's signature reads like its
contract. Each names its resource with a ``Dep`` suffix, as the explain API's do (services.common.app)."""
from __future__ import annotations

from typing import Annotated

from services.common.app import app_state
from services.inference.metrics import InferenceMetrics
from services.inference.model_runner import ModelRunner
from services.inference.settings import InferenceSettings

SettingsDep = Annotated[InferenceSettings, app_state("settings")]
ModelsDep = Annotated[ModelRunner, app_state("models")]
MetricsDep = Annotated[InferenceMetrics, app_state("metrics")]
