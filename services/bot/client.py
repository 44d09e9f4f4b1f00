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
from services.common.service_client import AsyncServiceClient, ServiceCallError

log = logging.getLogger(__name__)
T = TypeVar("T")

EXPLAIN_IMAGES = ("gradcam", "lrp", "panel")


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


class DiseaseIdClient(AsyncServiceClient):
    """The bot's client: a failed call is :class:`ServiceUnavailable` (try again later; a timeout is
    :class:`ServiceTimeout`) or :class:`InputRejected` (the service refused this upload)."""

    default_timeout_s = 30.0
    _class_names: dict[str, ClassNames] | None = None  # read once, on first use

    def failed(self, error: ServiceCallError) -> ServiceCallError:
        status = error.status
        if status is None:
            kind: type[ServiceCallError] = ServiceTimeout if error.timed_out else ServiceUnavailable
        elif status in (401, 403, 408, 429) or status >= 500:  # our key, or the service's state: not the image
            kind = ServiceUnavailable
        else:
            kind = InputRejected
        return kind(error.service, error.message, status=status, code=error.code)

    # inference ---------------------------------------------------------------------------------------------
    async def class_names(self, task: str) -> ClassNames:
        """The display names of ``task``'s classes from ``GET /models`` (the task registry), fetched once.

        Without them the chart shows class names as the service spells them; a failed fetch is tried again on
        the next conclusion."""
        if self._class_names is None:
            try:
                response = await self._request("inference", "GET", "/models")
                self._class_names = parse_class_names(response.json())
            except (ServiceCallError, ValueError) as exc:
                log.warning("could not read the class names from GET /models: %s", exc)
                return {}
        return self._class_names.get(task, {})

    async def predict(self, image: Upload, task: str, role: str | None = None) -> ConclusionView:
        data = {"task": task, **({"role": role} if role else {})}
        files = {"file": (image.filename, image.content, image.content_type)}
        response = await self._request("inference", "POST", "/predict", data=data, files=files)
        class_names = await self.class_names(task)
        return _read("inference", response, lambda body: read_prediction(body, class_names))

    async def predict_study(self, images: list[Upload], task: str, role: str | None = None) -> ConclusionView:
        data = {"task": task, **({"role": role} if role else {})}
        files = [("files", (im.filename, im.content, im.content_type)) for im in images]
        response = await self._request("inference", "POST", "/predict/study", data=data, files=files)
        class_names = await self.class_names(task)
        return _read("inference", response, lambda body: read_study(body, class_names))

    # explain -----------------------------------------------------------------------------------------------
    async def submit_explain(self, image: Upload, task: str, role: str | None = None) -> str:
        data = {"task": task, **({"role": role} if role else {})}
        files = {"file": (image.filename, image.content, image.content_type)}
        response = await self._request("explain", "POST", "/explain", data=data, files=files)
        return str(response.json()["job_id"])

    async def explain_status(self, job_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        """The job's state; `wait_s` > 0 asks the service to answer once the job ends (long poll)."""
        params = {"wait": f"{wait_s:.1f}"} if wait_s > 0 else None
        response = await self._request("explain", "GET", f"/explain/{job_id}",
                                       params=params, timeout=self.timeout_s + wait_s)
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
        response = await self._request("explain", "GET", f"/explain/{job_id}/{name}.png")
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
