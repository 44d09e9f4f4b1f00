"""HTTP client of our inference and explain services for the bridge: DICOM in, DICOM results out.

Like the bot's client (services/bot/client.py), the only way the bridge reaches the models; synchronous, as
the bridge handles one series at a time.
"""
from __future__ import annotations

import time
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from diseaseid.answers import ExplainResult, StudyResponse
from services.common.dicom_results import MEDIA_TYPE, split_multipart
from services.common.service_client import ServiceCallError, ServiceClient

Answer = TypeVar("Answer", bound=BaseModel)


class Unavailable(ServiceCallError):
    """Down, restarting or overloaded (no answer, 502/503/504): not the series' fault; try it again later."""


class Failed(ServiceCallError):
    """This series' request failed: refused (4xx, e.g. mixed_sizes), a server error, or a job that did not
    finish in time. Counted against the series."""


def _typed(service: str, model: type[Answer], body: Any) -> Answer:
    """``body`` read with its answer's model (``diseaseid.answers``); :class:`Failed` when it does not fit (a
    service of another version), counted against the series like any failed request."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise Failed(service, f"an answer in an unexpected shape ({exc.error_count()} errors)") from exc


class ServicesClient(ServiceClient):
    """The bridge's client: a failed call is :class:`Unavailable` (the services' state) or :class:`Failed`
    (this series' request)."""

    default_timeout_s = 60.0

    def failed(self, error: ServiceCallError) -> ServiceCallError:
        if error.status is None:  # no answer is the services' state; a timeout may be this series' size
            kind: type[ServiceCallError] = Failed if error.timed_out else Unavailable
            return kind(error.service, error.message)
        kind = Unavailable if error.status in (401, 403, 429, 502, 503, 504) else Failed
        return kind(error.service, error.message[:300] or f"HTTP {error.status}", status=error.status,
                    code=error.code)

    # -- inference -----------------------------------------------------------------------------------------
    def predict_sr(self, data: bytes, task: str) -> bytes:
        """One slice's answer as a DICOM SR."""
        r = self._request("inference", "POST", "/predict", data={"task": task},
                          files={"file": ("slice.dcm", data, MEDIA_TYPE)}, headers={"Accept": MEDIA_TYPE})
        return r.content

    def study(self, files: list[bytes], task: str, *, as_dicom: bool) -> StudyResponse | bytes:
        """A series as one subject's study: the answer, or with ``as_dicom`` its SR."""
        parts = [("files", (f"slice-{i}.dcm", data, MEDIA_TYPE)) for i, data in enumerate(files)]
        r = self._request("inference", "POST", "/predict/study", data={"task": task},
                          files=parts, headers={"Accept": MEDIA_TYPE if as_dicom else "application/json"})
        return r.content if as_dicom else _typed("inference", StudyResponse, r.json())

    # -- explain -------------------------------------------------------------------------------------------
    def explain(self, data: bytes, task: str, *, timeout_s: float, poll_s: float = 0.5
                ) -> tuple[ExplainResult, list[bytes]]:
        """Queue, wait, fetch: the finished job's result and its DICOM objects (images, then the SR)."""
        r = self._request("explain", "POST", "/explain", data={"task": task},
                          files={"file": ("slice.dcm", data, MEDIA_TYPE)})
        job_id = str(r.json()["job_id"])
        deadline = time.monotonic() + timeout_s
        while True:
            wait = max(0.0, min(10.0, deadline - time.monotonic()))
            view = self._request("explain", "GET", f"/explain/{job_id}",
                                 params={"wait": f"{wait:.1f}"}, timeout=self.timeout_s + wait).json()
            if view.get("status") == "finished":
                break
            if view.get("status") == "failed":
                raise Failed("explain", str((view.get("error") or {}).get("message", "the job failed")))
            if time.monotonic() + poll_s > deadline:
                raise Failed("explain", f"job {job_id} not finished after {timeout_s:.0f} s")
            time.sleep(poll_s)
        r = self._request("explain", "GET", f"/explain/{job_id}/dicom")
        return _typed("explain", ExplainResult, view.get("result")), split_multipart(
            r.content, r.headers.get("content-type", ""))
