"""A finished job's files, straight from Redis: overlays (PNG), raw maps (.npy) and the panel."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from rq import Queue
from starlette.concurrency import run_in_threadpool

from services.common.auth import TenantDep, require_api_key
from services.common.errors import NotFound, error_responses
from services.explain.api.deps import QueueDep, ResultStoreDep
from services.explain.api.views import check_owner
from services.explain.redis_store import ExplainStore
from services.explain.settings import METHODS

router = APIRouter(prefix="/explain", tags=["explain"], dependencies=[Depends(require_api_key)])

_PNG = {"content": {"image/png": {}}, "description": "PNG image"}
_NPY = {"content": {"application/octet-stream": {}}, "description": "224 x 224 float32 numpy array (.npy)"}


async def _file(store: ExplainStore, queue: Queue, tenant: str, job_id: str, name: str, media_type: str
                ) -> Response:
    data = await run_in_threadpool(_owned_result, store, queue, tenant, job_id, name)
    if data is None:
        raise NotFound(f"no {name} for job {job_id!r}: the job is unknown, not finished, "
                       "did not compute that method, or its results expired")
    # Results never change once written; a client may keep them as long as they exist here.
    return Response(data, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})


def _owned_result(store: ExplainStore, queue: Queue, tenant: str, job_id: str, name: str) -> bytes | None:
    check_owner(queue, job_id, tenant)
    return store.get_result(job_id, name)


def _method(method: str) -> str:
    if method not in METHODS:
        raise NotFound(f"unknown method {method[:20]!r}; results exist for: {', '.join(METHODS)}")
    return method


# Declared before the per-method routes so that "panel.png" is not read as a method called "panel".
@router.get("/{job_id}/panel.png", responses={200: _PNG, **error_responses(401, 404, 503)})
async def get_panel_png(tenant: TenantDep, store: ResultStoreDep, queue: QueueDep, job_id: str) -> Response:
    """The slice beside each method's heatmap, titled with the prediction."""
    return await _file(store, queue, tenant, job_id, "panel.png", "image/png")


@router.get("/{job_id}/{method}.png", responses={200: _PNG, **error_responses(401, 404, 503)})
async def get_overlay_png(tenant: TenantDep, store: ResultStoreDep, queue: QueueDep, job_id: str,
                          method: str) -> Response:
    """One method's heatmap over the slice."""
    return await _file(store, queue, tenant, job_id, f"{_method(method)}.png", "image/png")


@router.get("/{job_id}/{method}.npy", responses={200: _NPY, **error_responses(401, 404, 503)})
async def get_map_npy(tenant: TenantDep, store: ResultStoreDep, queue: QueueDep, job_id: str,
                      method: str) -> Response:
    """One method's raw map: Grad-CAM in [0, 1]; LRP signed relevance summed over channels."""
    return await _file(store, queue, tenant, job_id, f"{_method(method)}.npy", "application/octet-stream")
