"""HTTP client for our inference and explain services (the bot's only way to reach the models)."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from diseaseid.answers import ExplainResult
from services.bot.views import (
    ClassNames,
    ConclusionView,
    ExplainImages,
    Upload,
    parse_class_names,
    read_prediction,
    read_study,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

EXPLAIN_IMAGES = ("gradcam", "lrp", "panel")


class ServiceCallError(Exception):
    """A call to one of our services gave no answer; `code` is the service's error code when it sent one.

    (Not services.common.errors.ServiceError, which a service raises to answer with an error.)"""

    def __init__(self, service: str, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(f"{service}: {message}")
        self.service, self.message, self.status, self.code = service, message, status, code


class ServiceUnavailable(ServiceCallError):
    """Down, overloaded, timing out or misconfigured: the user should simply try again later."""


class ServiceTimeout(ServiceUnavailable):
    """Reachable but too slow to answer within the request timeout (busy, or stuck)."""


class InputRejected(ServiceCallError):
    """The service understood the request and refused the image (unreadable, too large, wrong type)."""


class ExplainFailed(ServiceCallError):
    """The explain job finished without pictures, or did not finish in time."""


class UnexpectedAnswer(ServiceUnavailable):
    """The service answered 200 with a body its answer's model (``diseaseid.answers``) does not accept: a
    service and a bot of different versions. Logged; the user is told to try again later."""


def _error_of(response: httpx.Response) -> tuple[str | None, str]:
    """The `{"error": {"code", "message"}}` body of our services, or FastAPI's `{"detail"}`."""
    try:
        body = response.json()
    except ValueError:
        return None, response.text[:200]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return error.get("code"), str(error.get("message", ""))
        if "detail" in body:
            return None, str(body["detail"])[:200]
    return None, str(body)[:200]


class DiseaseIdClient:
    def __init__(self, inference_url: str, explain_url: str, *, api_key: str | None = None,
                 timeout_s: float = 30.0, transport: httpx.AsyncBaseTransport | None = None):
        headers = {"X-API-Key": api_key} if api_key else {}
        self.inference_url = inference_url.rstrip("/")
        self.explain_url = explain_url.rstrip("/")
        self._http = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(timeout_s, connect=5.0),
                                       transport=transport)
        self._class_names: dict[str, ClassNames] | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, service: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise ServiceTimeout(service, "timed out") from exc
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(service, type(exc).__name__) from exc
        if response.is_success:
            return response
        code, message = _error_of(response)
        if response.status_code in (401, 403):
            log.error("%s refused our API key (HTTP %s): check DISEASEID_API_KEY",
                      service, response.status_code)
            raise ServiceUnavailable(service, message, status=response.status_code, code=code)
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise ServiceUnavailable(service, message, status=response.status_code, code=code)
        raise InputRejected(service, message, status=response.status_code, code=code)

    # inference ---------------------------------------------------------------------------------------------
    async def class_names(self, task: str) -> ClassNames:
        """The display names of ``task``'s classes from ``GET /models`` (the task registry), fetched once.

        Without them the chart shows class names as the service spells them; a failed fetch is tried again on
        the next conclusion."""
        if self._class_names is None:
            try:
                response = await self._request("inference", "GET", f"{self.inference_url}/models")
                self._class_names = parse_class_names(response.json())
            except (ServiceCallError, ValueError) as exc:
                log.warning("could not read the class names from GET /models: %s", exc)
                return {}
        return self._class_names.get(task, {})

    async def predict(self, image: Upload, task: str, role: str | None = None) -> ConclusionView:
        data = {"task": task, **({"role": role} if role else {})}
        files = {"file": (image.filename, image.content, image.content_type)}
        response = await self._request("inference", "POST", f"{self.inference_url}/predict",
                                       data=data, files=files)
        class_names = await self.class_names(task)
        return _read("inference", response, lambda body: read_prediction(body, class_names))

    async def predict_study(self, images: list[Upload], task: str, role: str | None = None) -> ConclusionView:
        data = {"task": task, **({"role": role} if role else {})}
        files = [("files", (im.filename, im.content, im.content_type)) for im in images]
        response = await self._request("inference", "POST", f"{self.inference_url}/predict/study",
                                       data=data, files=files)
        class_names = await self.class_names(task)
        return _read("inference", response, lambda body: read_study(body, class_names))

    # explain -----------------------------------------------------------------------------------------------
    async def submit_explain(self, image: Upload, task: str, role: str | None = None) -> str:
        data = {"task": task, **({"role": role} if role else {})}
        files = {"file": (image.filename, image.content, image.content_type)}
        response = await self._request("explain", "POST", f"{self.explain_url}/explain",
                                       data=data, files=files)
        return str(response.json()["job_id"])

    async def explain_status(self, job_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        """The job's state; `wait_s` > 0 asks the service to answer once the job ends (long poll)."""
        params = {"wait": f"{wait_s:.1f}"} if wait_s > 0 else None
        response = await self._request("explain", "GET", f"{self.explain_url}/explain/{job_id}",
                                       params=params, timeout=self._http.timeout.read + wait_s)
        return response.json()

    async def wait_explain(self, job_id: str, *, timeout_s: float, poll_s: float = 0.5,
                           long_poll_s: float = 10.0) -> dict[str, Any]:
        """Follow the job until it finishes; ExplainFailed when it fails or runs past `timeout_s`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            wait = max(0.0, min(long_poll_s, deadline - loop.time()))
            status = await self.explain_status(job_id, wait)
            state = status.get("status")
            if state == "finished":
                return status
            if state in ("failed", "stopped", "canceled", "cancelled"):
                error = status.get("error")
                reason = error.get("message") if isinstance(error, dict) else state
                raise ExplainFailed("explain", str(reason))
            if loop.time() + poll_s > deadline:
                raise ExplainFailed("explain", f"not finished after {timeout_s:.0f} s (status {state})")
            await asyncio.sleep(poll_s)

    async def explain_image(self, job_id: str, name: str) -> bytes:
        response = await self._request("explain", "GET", f"{self.explain_url}/explain/{job_id}/{name}.png")
        return response.content

    async def explain(self, image: Upload, task: str, *, timeout_s: float, poll_s: float = 0.5,
                      role: str | None = None) -> ExplainImages:
        """Submit, wait, fetch: the Grad-CAM and LRP overlays and the panel of one image."""
        job_id = await self.submit_explain(image, task, role or None)
        status = await self.wait_explain(job_id, timeout_s=timeout_s, poll_s=poll_s)
        result = _read("explain", status.get("result"), ExplainResult.model_validate)
        images = {}
        for name in EXPLAIN_IMAGES:
            try:
                images[name] = await self.explain_image(job_id, name)
            except InputRejected:  # e.g. a job run with fewer methods: show what exists
                log.warning("explain job %s has no %s.png", job_id, name)
        if not images:
            raise ExplainFailed("explain", "job finished without pictures")
        return ExplainImages.of(job_id, images, result)


def _read(service: str, answer: httpx.Response | Any, read: Callable[[Any], T]) -> T:
    """``read`` (a model's reader) over a response's JSON body or an already decoded part of one;
    :class:`UnexpectedAnswer` when it is not JSON or the model refuses it."""
    try:
        return read(answer.json() if isinstance(answer, httpx.Response) else answer)
    except (ValueError, ValidationError) as exc:  # ValidationError is a ValueError; named for the reader
        log.error("%s sent an answer this bot cannot read: %s", service, exc)
        raise UnexpectedAnswer(service, "an answer in an unexpected shape") from exc
