"""Explain jobs: submit one (``POST /explain``) and follow it (``GET /explain/{job_id}``)."""
from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from diseaseid.tasks import Task
from services.common.app import DecodeGateDep, base_url
from services.common.auth import TenantDep, require_api_key
from services.common.errors import UnknownMethod, UnknownTarget, error_responses
from services.common.uploads import read_image_upload
from services.common.validation import (
    form_text,
    reject_repeated_fields,
    resolve_model,
    resolve_task,
    role_field,
)
from services.explain.api.deps import (
    AsyncRedisDep,
    QueueDep,
    RequestMetricsDep,
    ResultStoreDep,
    SealerDep,
    SettingsDep,
)
from services.explain.api.dicom import has_source, remember_source
from services.explain.api.schemas import JobAccepted, JobView
from services.explain.api.submit import ExplainRequest, submit
from services.explain.api.views import fetch_job, job_state, job_view, wait_for_outcome
from services.explain.sealing import PAYLOAD
from services.explain.settings import METHODS

router = APIRouter(prefix="/explain", tags=["explain"], dependencies=[Depends(require_api_key)])


def parse_methods(values: list[str] | None) -> tuple[str, ...]:
    """Repeated fields or comma-separated values; none means every method. Order kept, repeats dropped."""
    texts = [form_text(v, "methods", error=UnknownMethod) for v in values or ()]
    names = [n.strip().lower() for v in texts for n in v.split(",") if n.strip()]
    if not names:
        return METHODS
    unknown = sorted({n for n in names if n not in METHODS})
    if unknown:
        shown = ", ".join(repr(n[:20]) for n in unknown[:3])
        raise UnknownMethod(f"unknown explanation method {shown}; choose from: {', '.join(METHODS)}")
    return tuple(dict.fromkeys(names))


def parse_target(task: Task, value: str | None) -> int | None:
    """A class name (as in the task's class list, any case) or its index; empty means the predicted class."""
    value = form_text(value, "target", error=UnknownTarget)
    if not value:
        return None
    try:
        return task.class_index(value)
    except ValueError as exc:
        raise UnknownTarget(str(exc)) from None


async def single_valued_fields(request: Request) -> None:
    """One ``file``, ``task``, ``role`` (or ``model``) and ``target`` per request, as on ``/predict``."""
    reject_repeated_fields(await request.form(), multiple=("methods",))


@router.post("", status_code=202, response_model=JobAccepted, dependencies=[Depends(single_valued_fields)],
             form_limits={"max_files": 1, "max_fields": 16},
             responses=error_responses(400, 401, 413, 415, 422, 503))
async def create_explain_job(
    request: Request,
    response: Response,
    tenant: TenantDep,
    settings: SettingsDep,
    queue: QueueDep,
    gate: DecodeGateDep,
    store: ResultStoreDep,
    sealer: SealerDep,
    request_metrics: RequestMetricsDep,
    file: Annotated[UploadFile, File(description="one MRI slice: JPEG, PNG or DICOM")],
    task: Annotated[str, Form(description="tumor or dementia")],
    role: Annotated[str | None, Form(description="student (default) or teacher")] = None,
    model: Annotated[str | None, Form(description="Deprecated: the old name of `role`; still read when `role` is "
                                                  "not sent", deprecated=True)] = None,
    methods: Annotated[list[str] | None, Form(description="gradcam, lrp (default: both)")] = None,
    target: Annotated[str | None, Form(description="class name or index to explain (default: the predicted)")
                      ] = None,
) -> JobAccepted:
    """Queue a Grad-CAM / LRP explanation of one slice; identical requests share one job."""
    task_ = resolve_task(task)
    role = resolve_model(role_field(role, model))
    method_names = parse_methods(methods)
    target_index = parse_target(task_, target)
    image = await read_image_upload(file, settings, gate)
    # Sealed here: the pixels rest in Redis (and its files on disk) until a worker takes the job.
    req = ExplainRequest(pixels=sealer.seal(image.array.tobytes(), PAYLOAD), image_sha256=image.sha256,
                         task=task_.name, role=role, methods=method_names, target=target_index, tenant=tenant)
    job, deduplicated = await run_in_threadpool(submit, queue, settings, req)
    if image.format == "dicom":  # for its results as DICOM (GET /explain/{id}/dicom)
        await remember_source(store, queue, job.id, file)
    request_metrics.submitted.labels("deduplicated" if deduplicated else "enqueued").inc()
    status_url = f"{base_url(request)}/explain/{job.id}"
    response.headers["Location"] = status_url
    return JobAccepted(job_id=job.id, status=job_state(job), status_url=status_url, deduplicated=deduplicated)


@router.get("/{job_id}", response_model=JobView, response_model_exclude_unset=True,
            responses=error_responses(401, 404, 503))
async def get_explain_job(
    request: Request,
    tenant: TenantDep,
    settings: SettingsDep,
    queue: QueueDep,
    waiter: AsyncRedisDep,
    job_id: str,
    wait: Annotated[float, Query(ge=0, description="seconds to wait for the job to end (long poll)")] = 0,
) -> JobView:
    """The job's state; its results once finished (with their DICOM objects for a DICOM input), the reason once
    failed; 404 once expired."""
    job = await run_in_threadpool(fetch_job, queue, job_id, tenant)
    if wait > 0 and job_state(job) in ("queued", "started"):
        await wait_for_outcome(waiter, job_id, min(wait, settings.max_wait_s))
        # Read again and described in one trip to the thread pool: the client is waiting for this.
        return await run_in_threadpool(_fetch_and_view, queue, job_id, tenant, base_url(request))
    return await run_in_threadpool(partial(job_view, dicom=has_source(job)), queue, job, base_url(request))


def _fetch_and_view(queue, job_id: str, tenant: str, url: str) -> JobView:
    job = fetch_job(queue, job_id, tenant)
    return job_view(queue, job, url, dicom=has_source(job))
