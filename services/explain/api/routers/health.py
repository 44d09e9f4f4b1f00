"""Liveness, readiness (Redis reachable and a worker alive) and Prometheus metrics."""
from __future__ import annotations

from fastapi import APIRouter, Request, Response

from services.common.errors import NotReady, error_responses
from services.common.liveness import alive_workers
from services.common.metrics import metrics_response
from services.explain.api.deps import ExplainQueue, Settings

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses=error_responses(503))
def readyz(settings: Settings, queue: ExplainQueue) -> dict:
    """Ready when Redis answers and at least one worker has sent a heartbeat lately."""
    queue.connection.ping()
    workers = alive_workers(queue, settings.heartbeat_fresh_s)
    if not workers:
        raise NotReady("no explain worker is alive: start one with `python -m services.explain.worker`")
    return {"status": "ready", "redis": "ok", "workers": len(workers), "queued": queue.count}


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    return metrics_response(request.app.state.metrics_registry)
