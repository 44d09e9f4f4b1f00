"""HTTP client of our inference and explain services for the bridge: DICOM in, DICOM results out.

Like the bot's client (services/bot/client.py), the only way the bridge reaches the models; synchronous, as
the bridge handles one series at a time.
"""
from __future__ import annotations

import time
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from diseaseid.answers import ExplainResult, StudyResponse
from services.common.dicom_results import MEDIA_TYPE, split_multipart

Answer = TypeVar("Answer", bound=BaseModel)


class ServiceCallError(Exception):
    def __init__(self, service: str, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(f"{service}: {message}")
        self.service, self.message, self.status, self.code = service, message, status, code


class Unavailable(ServiceCallError):
    """Down, restarting or overloaded (no answer, 502/503/504): not the series' fault; try it again later."""


class Failed(ServiceCallError):
    """This series' request failed: refused (4xx, e.g. mixed_sizes), a server error, or a job that did not
    finish in time. Counted against the series."""


def _error(response: httpx.Response) -> tuple[str | None, str]:
    try:
        error = response.json().get("error", {})
        return error.get("code"), str(error.get("message", ""))[:300]
    except (ValueError, AttributeError):
        return None, response.text[:200]


def _typed(service: str, model: type[Answer], body: Any) -> Answer:
    """``body`` read with its answer's model (``diseaseid.answers``); :class:`Failed` when it does not fit (a
    service of another version), counted against the series like any failed request."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise Failed(service, f"an answer in an unexpected shape ({exc.error_count()} errors)") from exc


class ServicesClient:
    def __init__(self, inference_url: str, explain_url: str, *, api_key: str | None = None,
                 timeout_s: float = 60.0, transport: httpx.BaseTransport | None = None):
        self.inference_url = inference_url.rstrip("/")
        self.explain_url = explain_url.rstrip("/")
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout_s, connect=5.0),
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def _call(self, service: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise Failed(service, "timed out") from exc
        except httpx.HTTPError as exc:
            raise Unavailable(service, type(exc).__name__) from exc
        if response.is_success:
            return response
        code, message = _error(response)
        kind = Unavailable if response.status_code in (401, 403, 429, 502, 503, 504) else Failed
        raise kind(service, message or f"HTTP {response.status_code}", status=response.status_code, code=code)

    # -- inference -----------------------------------------------------------------------------------------
    def predict_sr(self, data: bytes, task: str) -> bytes:
        """One slice's answer as a DICOM SR."""
        r = self._call("inference", "POST", f"{self.inference_url}/predict", data={"task": task},
                       files={"file": ("slice.dcm", data, MEDIA_TYPE)}, headers={"Accept": MEDIA_TYPE})
        return r.content

    def study(self, files: list[bytes], task: str, *, as_dicom: bool) -> StudyResponse | bytes:
        """A series as one subject's study: the answer, or with ``as_dicom`` its SR."""
        parts = [("files", (f"slice-{i}.dcm", data, MEDIA_TYPE)) for i, data in enumerate(files)]
        r = self._call("inference", "POST", f"{self.inference_url}/predict/study", data={"task": task},
                       files=parts, headers={"Accept": MEDIA_TYPE if as_dicom else "application/json"})
        return r.content if as_dicom else _typed("inference", StudyResponse, r.json())

    # -- explain -------------------------------------------------------------------------------------------
    def explain(self, data: bytes, task: str, *, timeout_s: float, poll_s: float = 0.5
                ) -> tuple[ExplainResult, list[bytes]]:
        """Queue, wait, fetch: the finished job's result and its DICOM objects (images, then the SR)."""
        r = self._call("explain", "POST", f"{self.explain_url}/explain", data={"task": task},
                       files={"file": ("slice.dcm", data, MEDIA_TYPE)})
        job_id = str(r.json()["job_id"])
        deadline = time.monotonic() + timeout_s
        while True:
            wait = max(0.0, min(10.0, deadline - time.monotonic()))
            view = self._call("explain", "GET", f"{self.explain_url}/explain/{job_id}",
                              params={"wait": f"{wait:.1f}"}, timeout=self._http.timeout.read + wait).json()
            if view.get("status") == "finished":
                break
            if view.get("status") == "failed":
                raise Failed("explain", str((view.get("error") or {}).get("message", "the job failed")))
            if time.monotonic() + poll_s > deadline:
                raise Failed("explain", f"job {job_id} not finished after {timeout_s:.0f} s")
            time.sleep(poll_s)
        r = self._call("explain", "GET", f"{self.explain_url}/explain/{job_id}/dicom")
        return _typed("explain", ExplainResult, view.get("result")), split_multipart(
            r.content, r.headers.get("content-type", ""))
