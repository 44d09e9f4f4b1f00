"""Liveness, readiness and Prometheus metrics (no authentication: probes and scrapers call these)."""
from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from services.common.errors import NotReady, error_responses
from services.common.metrics import metrics_response
from services.inference.deps import MetricsDep, ModelsDep
from services.inference.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz(models: ModelsDep) -> dict:
    """The process is alive (models may still be loading)."""
    return {"status": "alive", "models_loaded": len(models.pool.predictors)}


@router.get("/readyz", response_model=Health, responses=error_responses(503))
async def readyz(models: ModelsDep) -> dict:
    """Every model is loaded and warmed up: send traffic."""
    if not models.ready:
        if models.loaded.is_set():
            failed = ", ".join(f"{t}/{r}" for t, r in sorted(models.failures))
            raise NotReady(f"models failed to load: {failed}")
        raise NotReady("models are still loading")
    return {"status": "ready", "models_loaded": len(models.pool.predictors)}


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}},
                                                                   "description": "Prometheus text format"}})
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics: request counts and latency by task/model/status, model load times."""
    return metrics_response(metrics.registry)
