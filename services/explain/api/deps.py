"""What the explain routes need, as ``Annotated`` dependencies named with a ``Dep`` suffix, as the inference
service's are: the settings, the RQ queue, the result store, the metrics (services.common.app)."""
from __future__ import annotations

from typing import Annotated

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis as AsyncRedis
from rq import Queue

from services.common.app import app_state
from services.explain.api.metrics import RequestMetrics
from services.explain.redis_store import ExplainStore
from services.explain.sealing import Sealer
from services.explain.settings import ExplainSettings

SettingsDep = Annotated[ExplainSettings, app_state("settings")]
QueueDep = Annotated[Queue, app_state("queue")]
ResultStoreDep = Annotated[ExplainStore, app_state("store")]
SealerDep = Annotated[Sealer, app_state("sealer")]
RequestMetricsDep = Annotated[RequestMetrics, app_state("request_metrics")]
MetricsRegistryDep = Annotated[CollectorRegistry, app_state("metrics_registry")]
# For the long poll only: waiting on Redis from the event loop holds no thread.
AsyncRedisDep = Annotated[AsyncRedis, app_state("async_redis")]
