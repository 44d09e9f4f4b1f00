"""The page's own JSON API (its script calls these; the services' key stays on this server).

``POST /api/analyse`` sends the upload to the inference service and, for a diagnosis, queues the heatmaps of
the slice it rests on; ``GET /api/explain/{id}`` follows that job; ``GET /api/explain/{id}/{name}.png`` passes
its pictures through. For a DICOM upload, ``POST /api/dicom/sr`` gives the same answer as the inference
service's DICOM Structured Report and ``GET /api/explain/{id}/dicom/{name}.dcm`` the heatmaps as DICOM. Errors
are the services' JSON body with a message in the page's language.

Why the SR is asked for again, with the files, when a person wants it: the page's server keeps no upload and
no answer between requests (nothing of a patient rests here), and asking the inference service for the SR on
every DICOM upload would run the models twice for answers few people download. The browser still has the
files; the service answers the same files with the same numbers (the test checks the SR against the page).
"""
from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, UploadFile
from starlette.responses import Response

from services.common.errors import NotFound, PayloadTooLarge, ServiceError, error_responses
from services.common.uploads import read_upload_bytes
from services.web.client import DICOM, EXPLAIN_DICOM, EXPLAIN_IMAGES, ServicesClient, Upload, UpstreamError
from services.web.deps import ClientDep, SettingsDep
from services.web.files import Limits, UploadRefused, is_dicom, slices_of
from services.web.settings import WebSettings
from services.web.texts import pick_lang, t
from services.web.views import conclusion_view, dicom_offer, explain_view, key_slice

log = logging.getLogger("services.web")

router = APIRouter(prefix="/api", tags=["page"])

JOB_ID = r"^[A-Za-z0-9_-]{1,64}$"
_FILE_PREFIX = re.compile(r"^file (\d+): ")


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g}"


def _name(filename: str | None) -> str:
    """The file's own name (no folders a browser or a zip may add), short enough to show."""
    name = re.split(r"[\\/]", filename or "")[-1].strip()
    return (name or "upload")[:200]


def upstream_error(exc: UpstreamError, lang: str, slices: list[Upload], settings: WebSettings) -> ServiceError:
    """A service's refusal in words a clinician reads, with the service's status and code kept."""
    match = _FILE_PREFIX.match(exc.message)
    index = int(match.group(1)) if match else 0
    name = slices[index].name if 0 <= index < len(slices) else (slices[0].name if slices else "")
    status, code = exc.status, exc.code
    if code in ("busy", "not_ready", "queue_unavailable"):
        message = t("error_busy", lang)
    elif code == "unavailable":
        message = t("error_unavailable", lang)
    elif code == "timeout":
        message = t("error_timeout", lang)
    elif code == "unsupported_media_type":
        message = t("error_not_an_image", lang, name=name)
    elif code == "image_too_large":
        message = t("error_too_many_pixels", lang, name=name)
    elif code == "invalid_image":
        message = t("error_unreadable", lang, name=name)
    elif code == "too_large":
        message = t("error_file_too_large", lang, name=name, limit=_mb(settings.max_upload_bytes))
    elif code == "too_many_files":
        message = t("error_too_many_files", lang, limit=settings.web_max_files, n=len(slices))
    elif code == "unknown_task":
        message = t("error_unknown_task", lang)
    elif code in ("cannot_write_dicom", "not_acceptable"):
        message = t("error_sr", lang, reason=exc.message or code)
    else:
        log.warning("unexpected refusal from %s: HTTP %s %s", exc.service, status, code)
        message = t("error_other", lang, reason=exc.message or code)
        status = status if 400 <= status < 600 else 502
    return ServiceError(message, code=code, status=status)


async def _start_explain(client: ServicesClient, answer: dict[str, Any], view: dict[str, Any],
                         slices: list[Upload], task: str, lang: str) -> dict[str, Any]:
    """Queue the heatmaps of the slice the conclusion rests on, with the model that answered; a study's key
    slice is explained for the subject's label. The conclusion stands whatever happens here."""
    study = view["kind"] == "study"
    target = None
    explain: dict[str, Any] = {}
    index = 0
    if study:
        target = str(answer["subject"]["label"])
        found = key_slice(answer, target)
        if found is None:
            return {"error": t("explain_failed", lang)}
        index = found
        explain["key_slice"] = t("key_slice", lang, k=index + 1, n=len(slices), name=slices[index].name)
    # a study's ``model`` is what produced the subject answer (the MIL head); its slices were read by ``slice_model``
    role = (answer.get("slice_model") or answer.get("model") or {}).get("role")
    try:
        explain["job_id"] = await client.submit_explain(slices[index], task, role=role, target=target)
    except (UpstreamError, KeyError, ValueError) as exc:
        log.warning("could not queue the heatmaps: %s", exc)
        return {"error": t("explain_unavailable", lang)}
    explain["text"] = t("explain_queued", lang)
    return explain


TaskForm = Annotated[str, Form(max_length=32, description="tumor or dementia (GET /models of the inference "
                                                         "service lists the tasks)")]
LangForm = Annotated[str, Form(max_length=8, description="en or ru: the language of the answer")]
FilesForm = Annotated[list[UploadFile] | None, File(description="One slice, the slices of one study, a zip of "
                                                                "them, or a DICOM series")]


async def _slices(files: list[UploadFile] | None, settings: WebSettings, lang: str) -> list[Upload]:
    """The upload as the slices to send, in stack order, within the page's limits."""
    uploads = []
    for f in files or ():
        try:
            data = await read_upload_bytes(f, settings.web_max_request_bytes)
        except PayloadTooLarge:
            raise PayloadTooLarge(t("error_upload_too_large", lang,
                                    limit=_mb(settings.web_max_request_bytes))) from None
        uploads.append(Upload(_name(f.filename), data, f.content_type or "application/octet-stream"))
    limits = Limits(settings.web_max_files, settings.max_upload_bytes, settings.web_max_request_bytes)
    try:
        return slices_of(uploads, limits)
    except UploadRefused as exc:
        raise ServiceError(t(exc.key, lang, **exc.values), code=exc.code, status=exc.status) from None


@router.post("/analyse", responses=error_responses(400, 413, 415, 422, 503))
async def analyse(client: ClientDep, settings: SettingsDep, task: TaskForm, lang: LangForm = "en",
                  files: FilesForm = None) -> dict[str, Any]:
    """Analyse an upload: the conclusion as the page shows it and, for a diagnosis, the heatmap job."""
    lang = pick_lang(lang, None)
    slices = await _slices(files, settings, lang)
    try:
        answer = await client.predict(slices, task)
    except UpstreamError as exc:
        raise upstream_error(exc, lang, slices, settings) from None
    view = conclusion_view(answer, task=task, lang=lang, files=[s.name for s in slices],
                           models=await client.models())
    view.update(dicom_offer(all(is_dicom(s.content) for s in slices), lang))
    if view["diagnosis"]:
        view["explain"] = await _start_explain(client, answer, view, slices, task, lang)
    return view


@router.post("/dicom/sr", responses={200: {"content": {DICOM: {}}, "description": "A DICOM SR (TID 1500)"},
                                     **error_responses(400, 406, 413, 415, 422, 503)})
async def dicom_sr(client: ClientDep, settings: SettingsDep, task: TaskForm, lang: LangForm = "en",
                   files: FilesForm = None) -> Response:
    """The answer to a DICOM upload (the same files as ``/api/analyse``) as the inference service's DICOM
    Structured Report, in the study of the files; 406 for JPEG/PNG, which name no study."""
    lang = pick_lang(lang, None)
    slices = await _slices(files, settings, lang)
    if not all(is_dicom(s.content) for s in slices):
        raise ServiceError(t("sr_dicom_only", lang), code="not_acceptable", status=406)
    try:
        data = await client.predict_sr(slices, task)
    except UpstreamError as exc:
        raise upstream_error(exc, lang, slices, settings) from None
    return Response(data, media_type=DICOM, headers={
        "Content-Disposition": 'attachment; filename="diseaseid-sr.dcm"', "Cache-Control": "no-store"})


@router.get("/explain/{job_id}", responses=error_responses(404, 503))
async def explain_status(client: ClientDep, settings: SettingsDep,
                         job_id: Annotated[str, Path(pattern=JOB_ID)],
                         lang: Annotated[str, Query(max_length=8)] = "en") -> dict[str, Any]:
    """The heatmap job: a progress line, or the overlays once they are there (waits up to
    DISEASEID_WEB_EXPLAIN_WAIT_S for the job to end)."""
    lang = pick_lang(lang, None)
    try:
        job = await client.explain_status(job_id, settings.web_explain_wait_s)
    except UpstreamError as exc:
        if exc.status == 404:
            raise NotFound(t("explain_failed", lang)) from None
        raise ServiceError(t("explain_unavailable", lang), code=exc.code, status=503) from None
    return explain_view(job, job_id=job_id, lang=lang)


@router.get("/explain/{job_id}/{name}.png", responses={200: {"content": {"image/png": {}}},
                                                       **error_responses(404, 503)})
async def explain_png(client: ClientDep, job_id: Annotated[str, Path(pattern=JOB_ID)], name: str) -> Response:
    """A heatmap overlay (gradcam, lrp) or the panel, passed through from the explain service."""
    if name not in EXPLAIN_IMAGES:
        raise NotFound(f"no picture called {name[:20]!r}")
    try:
        data = await client.explain_png(job_id, name)
    except UpstreamError as exc:
        if exc.status == 404:
            raise NotFound("the picture is not there (the job is unknown, unfinished or expired)") from None
        raise ServiceError("the explain service is not reachable", code=exc.code, status=503) from None
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/explain/{job_id}/dicom/{name}.dcm", responses={200: {"content": {DICOM: {}}},
                                                            **error_responses(404, 406, 503)})
async def explain_dicom(client: ClientDep, job_id: Annotated[str, Path(pattern=JOB_ID)], name: str) -> Response:
    """A heatmap (gradcam, lrp), the panel or the SR referencing them as DICOM, for a job of a DICOM slice,
    passed through from the explain service."""
    if name not in EXPLAIN_DICOM:
        raise NotFound(f"no DICOM object called {name[:20]!r}")
    try:
        data = await client.explain_dicom(job_id, name)
    except UpstreamError as exc:
        if exc.status in (404, 406):
            raise ServiceError("no such DICOM object: the job is unknown, unfinished or expired, or explained a "
                               "JPEG/PNG", code=exc.code, status=exc.status) from None
        raise ServiceError("the explain service is not reachable", code=exc.code, status=503) from None
    return Response(data, media_type=DICOM, headers={
        "Content-Disposition": f'attachment; filename="diseaseid-{name}.dcm"',
        "Cache-Control": "private, max-age=3600"})
