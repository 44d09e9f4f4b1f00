"""The page's server as an HTTP client of the inference and explain services: the page's only way to the models.

It sends the operator's ``DISEASEID_API_KEY`` (the browser never sees it) and gives back the services' answers
checked with their models (``diseaseid.answers``), as JSON; what a person reads is made from them in
:mod:`services.web.views`. A failure becomes an
:class:`UpstreamError` with the service's own error code and status when it sent one.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from diseaseid.answers import ExplainResult, PredictResponse, StudyResponse
from services.common.service_client import AsyncServiceClient, ServiceCallError

log = logging.getLogger("services.web")

EXPLAIN_IMAGES = ("gradcam", "lrp", "panel")
# An explanation of a DICOM slice as DICOM (GET /explain/{id}/dicom/{name}.dcm): the pictures as Secondary
# Capture images and the SR that references them.
EXPLAIN_DICOM = (*EXPLAIN_IMAGES, "sr")
DICOM = "application/dicom"


@dataclass(frozen=True)
class Upload:
    """One file as the page's server forwards it."""

    name: str
    content: bytes
    content_type: str = "application/octet-stream"


class UpstreamError(Exception):
    """A service gave no usable answer: ``status`` and ``code`` are its own when it sent an error body;
    ``code`` is ``unavailable`` (not reachable) or ``timeout`` when it did not answer."""

    def __init__(self, service: str, status: int, code: str, message: str):
        super().__init__(f"{service}: HTTP {status} {code}: {message}")
        self.service, self.status, self.code, self.message = service, status, code, message


def _answer(service: str, model: type[BaseModel], body: Any) -> dict[str, Any]:
    """``body`` read with its answer's model (``diseaseid.answers``) and given back as the model writes it; an
    answer off the contract (a service of another version) is an :class:`UpstreamError`, not half read."""
    try:
        return model.model_validate(body).model_dump(mode="json")
    except ValidationError as exc:
        raise UpstreamError(service, 502, "unexpected_answer",
                            f"an answer in an unexpected shape ({exc.error_count()} errors)") from exc


class ServicesClient(AsyncServiceClient):
    """The page's client: every failed call is an :class:`UpstreamError`."""

    default_timeout_s = 120.0
    _models: dict[str, Any] | None = None  # read once, on first use

    def failed(self, error: ServiceCallError) -> UpstreamError:
        if error.status is None:
            if error.timed_out:
                return UpstreamError(error.service, 504, "timeout", "no answer in time")
            return UpstreamError(error.service, 503, "unavailable", error.message)
        if error.status in (401, 403):  # our key, not the person's upload
            return UpstreamError(error.service, 503, "unavailable", "the service refused the page's API key")
        return UpstreamError(error.service, error.status, error.code or "http_error", error.message)

    # inference ---------------------------------------------------------------------------------------------
    async def models(self) -> dict[str, Any]:
        """``GET /models``, read once: tasks, their classes' display names, models. Empty (and asked again
        next time) while the service cannot answer."""
        if self._models is None:
            try:
                response = await self._request("inference", "GET", "/models", timeout=5.0)
                self._models = response.json()
            except (UpstreamError, ValueError) as exc:
                log.warning("could not read GET /models: %s", exc)
                return {}
        return self._models

    @property
    def models_cached(self) -> dict[str, Any]:
        """What :meth:`models` read so far, without asking (the page must not wait for it)."""
        return self._models or {}

    async def predict(self, uploads: list[Upload], task: str) -> dict[str, Any]:
        """One file: ``POST /predict``; several: ``POST /predict/study`` (in the order given)."""
        data = {"task": task}
        if len(uploads) == 1:
            u = uploads[0]
            response = await self._request("inference", "POST", "/predict", data=data,
                                           files={"file": (u.name, u.content, u.content_type)})
        else:
            files = [("files", (u.name, u.content, u.content_type)) for u in uploads]
            response = await self._request("inference", "POST", "/predict/study",
                                           data=data, files=files)
        return _answer("inference", PredictResponse if len(uploads) == 1 else StudyResponse, response.json())

    async def predict_sr(self, uploads: list[Upload], task: str) -> bytes:
        """The same answer as :meth:`predict`, as the inference service's DICOM Structured Report (TID 1500) in
        the uploads' study (DICOM uploads only: anything else gets the service's 406)."""
        data = {"task": task, "format": "dicom"}
        headers = {"Accept": DICOM}
        if len(uploads) == 1:
            u = uploads[0]
            response = await self._request("inference", "POST", "/predict", data=data,
                                           headers=headers, files={"file": (u.name, u.content, u.content_type)})
        else:
            files = [("files", (u.name, u.content, u.content_type)) for u in uploads]
            response = await self._request("inference", "POST", "/predict/study",
                                           data=data, headers=headers, files=files)
        return response.content

    async def ready(self) -> bool:
        try:
            await self._request("inference", "GET", "/readyz", timeout=3.0)
        except UpstreamError:
            return False
        return True

    # explain -----------------------------------------------------------------------------------------------
    async def submit_explain(self, upload: Upload, task: str, *, role: str | None = None,
                             target: str | None = None) -> str:
        data = {"task": task, **({"role": role} if role else {}), **({"target": target} if target else {})}
        response = await self._request("explain", "POST", "/explain", data=data,
                                       files={"file": (upload.name, upload.content, upload.content_type)})
        return str(response.json()["job_id"])

    async def explain_status(self, job_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        """The job as ``GET /explain/{id}`` shows it; ``wait_s`` > 0 lets the service answer once the job ends
        (a long poll), so the page asks a few times per job rather than many."""
        params = {"wait": f"{wait_s:.1f}"} if wait_s > 0 else None
        response = await self._request("explain", "GET", f"/explain/{job_id}", params=params,
                                       timeout=self.timeout_s + wait_s)
        job = response.json()
        if isinstance(job, dict) and job.get("result") is not None:  # finished: the result is a typed answer
            job = {**job, "result": _answer("explain", ExplainResult, job["result"])}
        return job

    async def explain_png(self, job_id: str, name: str) -> bytes:
        response = await self._request("explain", "GET", f"/explain/{job_id}/{name}.png")
        return response.content

    async def explain_dicom(self, job_id: str, name: str) -> bytes:
        """One DICOM object of a finished job of a DICOM slice (``gradcam``, ``lrp``, ``panel`` or ``sr``)."""
        response = await self._request("explain", "GET", f"/explain/{job_id}/dicom/{name}.dcm",
                                       headers={"Accept": DICOM})
        return response.content
