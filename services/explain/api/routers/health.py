"""Liveness, readiness (Redis reachable and a worker alive) and Prometheus metrics (no authentication: probes
and scrapers call these)."""
from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from services.common.errors import NotReady, error_responses
from services.common.metrics import metrics_response
from services.explain.api.deps import MetricsRegistryDep, QueueDep, SettingsDep
from services.explain.liveness import alive_workers
from services.explain.recovery import gone_workers

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    """The process answers."""
    return {"status": "ok"}


def _readiness(settings, queue) -> dict:
    redis = queue.connection
    redis.ping()
    # A dead worker's connections close with it: alive means beating and connected (right after a Redis
    # restart, while workers reconnect, the heartbeat alone decides).
    workers = alive_workers(queue, settings.heartbeat_fresh_s,
                            lambda names: gone_workers(redis, names, settings.reconnect_settle_s))
    if not workers:
        raise NotReady("no explain worker is alive: start one with `python -m services.explain.worker`")
    return {"status": "ready", "redis": "ok", "workers": len(workers), "queued": queue.count}


@router.get("/readyz", responses=error_responses(503))
async def readyz(settings: SettingsDep, queue: QueueDep) -> dict:
    """Ready when Redis answers and at least one worker is connected and has sent a heartbeat lately."""
    return await run_in_threadpool(_readiness, settings, queue)


@router.get("/metrics", response_class=Response)
async def metrics(registry: MetricsRegistryDep) -> Response:
    """Prometheus text format."""
    # The collector reads Redis at scrape time.
    return await run_in_threadpool(metrics_response, registry)
