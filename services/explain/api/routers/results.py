"""A finished job's files, straight from Redis: overlays (PNG), raw maps (.npy) and the panel; for a DICOM
input also the same as DICOM objects (Secondary Capture images and an SR, services.explain.api.dicom)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from rq import Queue
from starlette.concurrency import run_in_threadpool

from services.common.auth import TenantDep, require_api_key
from services.common.dicom_results import MEDIA_TYPE, multipart_related
from services.common.errors import NotFound, error_responses
from services.explain.api.deps import QueueDep, ResultStoreDep
from services.explain.api.dicom import OBJECT_NAMES, dicom_objects
from services.explain.api.views import check_owner
from services.explain.redis_store import ExplainStore
from services.explain.settings import METHODS

router = APIRouter(prefix="/explain", tags=["explain"], dependencies=[Depends(require_api_key)])

_PNG = {"content": {"image/png": {}}, "description": "PNG image"}
_NPY = {"content": {"application/octet-stream": {}}, "description": "224 x 224 float32 numpy array (.npy)"}
_DICOM = {"content": {MEDIA_TYPE: {}}, "description": "A DICOM object"}
_MULTIPART = {"content": {"multipart/related": {}},
              "description": 'The DICOM objects as multipart/related; type="application/dicom" (what STOW-RS takes)'}


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


@router.get("/{job_id}/dicom", responses={200: _MULTIPART, **error_responses(401, 404, 406, 422, 503)})
async def get_dicom_results(tenant: TenantDep, store: ResultStoreDep, queue: QueueDep, job_id: str) -> Response:
    """For a DICOM input: every method's heatmap and the panel as Secondary Capture images, then an SR (TID 1500)
    with the explained prediction referencing them and the slice, all in the slice's study; ready for STOW-RS."""
    objects = await run_in_threadpool(dicom_objects, store, queue, tenant, job_id)
    body, content_type = multipart_related(list(objects.values()))
    return Response(body, headers={"Content-Type": content_type, "Cache-Control": "private, max-age=3600"})


@router.get("/{job_id}/dicom/{name}.dcm", responses={200: _DICOM, **error_responses(401, 404, 406, 422, 503)})
async def get_dicom_object(tenant: TenantDep, store: ResultStoreDep, queue: QueueDep, job_id: str,
                           name: str) -> Response:
    """One of them: `gradcam`, `lrp`, `panel` (Secondary Capture) or `sr`."""
    if name not in OBJECT_NAMES:
        raise NotFound(f"unknown DICOM result {name[:20]!r}; there are: {', '.join(OBJECT_NAMES)}")
    objects = await run_in_threadpool(dicom_objects, store, queue, tenant, job_id)
    if name not in objects:
        raise NotFound(f"job {job_id!r} has no {name} (not among the methods it computed)")
    return Response(objects[name], media_type=MEDIA_TYPE,
                    headers={"Cache-Control": "private, max-age=3600",
                             "Content-Disposition": f'attachment; filename="{name}.dcm"'})
