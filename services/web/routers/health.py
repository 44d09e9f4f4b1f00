"""Liveness, readiness and metrics of the page's server (open: probes and scrapers call these)."""
from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from services.common.errors import NotReady, error_responses
from services.common.metrics import metrics_response
from services.web.deps import ClientDep, MetricsDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict:
    """The page's server is alive (the services behind it may not be)."""
    return {"status": "alive"}


@router.get("/readyz", responses=error_responses(503))
async def readyz(client: ClientDep) -> dict:
    """The inference service behind the page is ready: an upload would be answered."""
    if not await client.ready():
        raise NotReady("the inference service is not ready")
    return {"status": "ready"}


@router.get("/metrics", response_class=Response)
async def metrics(http: MetricsDep) -> Response:
    """Prometheus metrics: the page's requests by route and status."""
    return metrics_response(http.registry)
