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

import httpx
from pydantic import BaseModel, ValidationError

from diseaseid.answers import ExplainResult, PredictResponse, StudyResponse

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


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "http_error", response.text[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or "http_error"), str(error.get("message") or "")
    return "http_error", str(body)[:200]


def _answer(service: str, model: type[BaseModel], body: Any) -> dict[str, Any]:
    """``body`` read with its answer's model (``diseaseid.answers``) and given back as the model writes it; an
    answer off the contract (a service of another version) is an :class:`UpstreamError`, not half read."""
    try:
        return model.model_validate(body).model_dump(mode="json")
    except ValidationError as exc:
        raise UpstreamError(service, 502, "unexpected_answer",
                            f"an answer in an unexpected shape ({exc.error_count()} errors)") from exc


class ServicesClient:
    def __init__(self, inference_url: str, explain_url: str, *, api_key: str | None = None,
                 timeout_s: float = 120.0, transport: httpx.AsyncBaseTransport | None = None):
        self.inference_url = inference_url.rstrip("/")
        self.explain_url = explain_url.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout_s, connect=5.0),
                                       transport=transport)
        self._models: dict[str, Any] | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, service: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise UpstreamError(service, 504, "timeout", "no answer in time") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(service, 503, "unavailable", type(exc).__name__) from exc
        if response.is_success:
            return response
        code, message = _error_of(response)
        if response.status_code in (401, 403):
            # Our key, not the person's upload: say so in the log, where the operator looks.
            log.error("%s refused the page's API key (HTTP %s): check DISEASEID_API_KEY", service,
                      response.status_code)
            raise UpstreamError(service, 503, "unavailable", "the service refused the page's API key")
        raise UpstreamError(service, response.status_code, code, message)

    # inference ---------------------------------------------------------------------------------------------
    async def models(self) -> dict[str, Any]:
        """``GET /models``, read once: tasks, their classes' display names, models. Empty (and asked again
        next time) while the service cannot answer."""
        if self._models is None:
            try:
                response = await self._request("inference", "GET", f"{self.inference_url}/models", timeout=5.0)
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
            response = await self._request("inference", "POST", f"{self.inference_url}/predict", data=data,
                                           files={"file": (u.name, u.content, u.content_type)})
        else:
            files = [("files", (u.name, u.content, u.content_type)) for u in uploads]
            response = await self._request("inference", "POST", f"{self.inference_url}/predict/study",
                                           data=data, files=files)
        return _answer("inference", PredictResponse if len(uploads) == 1 else StudyResponse, response.json())

    async def predict_sr(self, uploads: list[Upload], task: str) -> bytes:
        """The same answer as :meth:`predict`, as the inference service's DICOM Structured Report (TID 1500) in
        the uploads' study (DICOM uploads only: anything else gets the service's 406)."""
        data = {"task": task, "format": "dicom"}
        headers = {"Accept": DICOM}
        if len(uploads) == 1:
            u = uploads[0]
            response = await self._request("inference", "POST", f"{self.inference_url}/predict", data=data,
                                           headers=headers, files={"file": (u.name, u.content, u.content_type)})
        else:
            files = [("files", (u.name, u.content, u.content_type)) for u in uploads]
            response = await self._request("inference", "POST", f"{self.inference_url}/predict/study",
                                           data=data, headers=headers, files=files)
        return response.content

    async def ready(self) -> bool:
        try:
            await self._request("inference", "GET", f"{self.inference_url}/readyz", timeout=3.0)
        except UpstreamError:
            return False
        return True

    # explain -----------------------------------------------------------------------------------------------
    async def submit_explain(self, upload: Upload, task: str, *, role: str | None = None,
                             target: str | None = None) -> str:
        data = {"task": task, **({"role": role} if role else {}), **({"target": target} if target else {})}
        response = await self._request("explain", "POST", f"{self.explain_url}/explain", data=data,
                                       files={"file": (upload.name, upload.content, upload.content_type)})
        return str(response.json()["job_id"])

    async def explain_status(self, job_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        """The job as ``GET /explain/{id}`` shows it; ``wait_s`` > 0 lets the service answer once the job ends
        (a long poll), so the page asks a few times per job rather than many."""
        params = {"wait": f"{wait_s:.1f}"} if wait_s > 0 else None
        response = await self._request("explain", "GET", f"{self.explain_url}/explain/{job_id}", params=params,
                                       timeout=self._http.timeout.read + wait_s)
        job = response.json()
        if isinstance(job, dict) and job.get("result") is not None:  # finished: the result is a typed answer
            job = {**job, "result": _answer("explain", ExplainResult, job["result"])}
        return job

    async def explain_png(self, job_id: str, name: str) -> bytes:
        response = await self._request("explain", "GET", f"{self.explain_url}/explain/{job_id}/{name}.png")
        return response.content

    async def explain_dicom(self, job_id: str, name: str) -> bytes:
        """One DICOM object of a finished job of a DICOM slice (``gradcam``, ``lrp``, ``panel`` or ``sr``)."""
        response = await self._request("explain", "GET", f"{self.explain_url}/explain/{job_id}/dicom/{name}.dcm",
                                       headers={"Accept": DICOM})
        return response.content
