"""What every client of our inference and explain services shares: one HTTP call, our JSON error read back.

The bot, the web page's server (both asynchronous) and the PACS bridge (synchronous) reach the models only
through these services. Each builds on :class:`AsyncServiceClient` or :class:`ServiceClient`, which hold the
two base URLs, the ``X-API-Key`` header, the timeout, and turn a call without a usable answer into a
:class:`ServiceCallError`: the HTTP status, and the code and message of the service's
``{"error": {"code", "message"}}`` body (FastAPI's own ``{"detail"}`` and bodies that are not JSON are read
too). Each client decides what such a failure means to it (try again later, the user's image was refused, ...)
by overriding :meth:`failed`, which gives the exception its callers catch.

Light on purpose (httpx and the standard library): the bot and the web page import it and load no torch and
no image decoder.
"""
from __future__ import annotations

import logging
from typing import Any

import httpx

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
# How much of a body that is not our error format the message keeps (it goes to logs, and to a person's screen).
MAX_FOREIGN_TEXT = 200


class ServiceCallError(Exception):
    """A call to one of our services gave no usable answer.

    ``status`` is the HTTP status and ``code`` the service's error code when it answered with an error;
    both are None when no answer came, and ``timed_out`` tells a silent service from an unreachable one.
    (Not :class:`services.common.errors.ServiceError`, which a service raises to answer with an error.)"""

    def __init__(self, service: str, message: str, *, status: int | None = None, code: str | None = None,
                 timed_out: bool = False):
        super().__init__(f"{service}: {message}")
        self.service, self.message, self.status, self.code = service, message, status, code
        self.timed_out = timed_out


def read_error(response: httpx.Response) -> tuple[str | None, str]:
    """``(code, message)`` of an error answer: our services' ``{"error": {"code", "message"}}``, FastAPI's
    ``{"detail"}`` (no code), or the start of any other body (no code)."""
    try:
        body = response.json()
    except ValueError:
        return None, response.text[:MAX_FOREIGN_TEXT]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            return (str(code) if code else None), str(error.get("message") or "")
        if "detail" in body:
            return None, str(body["detail"])[:MAX_FOREIGN_TEXT]
    return None, str(body)[:MAX_FOREIGN_TEXT]


class _Base:
    """The part the synchronous and asynchronous clients share: everything but the call itself."""

    _http_class: type[httpx.Client] | type[httpx.AsyncClient]
    default_timeout_s = 60.0  # a client's own default, for its longest ordinary call

    def __init__(self, inference_url: str, explain_url: str, *, api_key: str | None = None,
                 timeout_s: float | None = None,
                 transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None):
        self.inference_url = inference_url.rstrip("/")
        self.explain_url = explain_url.rstrip("/")
        self._urls = {"inference": self.inference_url, "explain": self.explain_url}
        self._timeout = httpx.Timeout(timeout_s or self.default_timeout_s, connect=CONNECT_TIMEOUT_S)
        self._http = self._http_class(headers={"X-API-Key": api_key} if api_key else {}, timeout=self._timeout,
                                      transport=transport)

    @property
    def timeout_s(self) -> float:
        """The read timeout of one call (a long poll adds its own wait to it)."""
        return float(self._timeout.read or 0.0)

    def url(self, service: str, path: str) -> str:
        """``path`` (``/predict``) on ``service`` (``inference`` or ``explain``)."""
        return self._urls[service] + path

    def failed(self, error: ServiceCallError) -> Exception:
        """The exception this client raises for ``error``; the error itself unless a client says otherwise."""
        return error

    def _no_answer(self, service: str, exc: httpx.HTTPError) -> Exception:
        if isinstance(exc, httpx.TimeoutException):
            return self.failed(ServiceCallError(service, "timed out", timed_out=True))
        return self.failed(ServiceCallError(service, type(exc).__name__))

    def _checked(self, service: str, response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        code, message = read_error(response)
        if response.status_code in (401, 403):
            # Our key, not the user's upload: said in the log, where the operator looks.
            log.error("%s refused our API key (HTTP %s): check DISEASEID_API_KEY", service, response.status_code)
        raise self.failed(ServiceCallError(service, message, status=response.status_code, code=code))


class AsyncServiceClient(_Base):
    """An asynchronous client of our services (the bot, the web page's server); ``transport`` an
    ``httpx.AsyncBaseTransport`` when given."""

    _http_class = httpx.AsyncClient
    _http: httpx.AsyncClient

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """``method path`` on ``service``; the answer when it succeeded, else :meth:`failed`'s exception."""
        try:
            response = await self._http.request(method, self.url(service, path), **kwargs)
        except httpx.HTTPError as exc:
            raise self._no_answer(service, exc) from exc
        return self._checked(service, response)


class ServiceClient(_Base):
    """A synchronous client of our services (the PACS bridge, which handles one series at a time);
    ``transport`` an ``httpx.BaseTransport`` when given."""

    _http_class = httpx.Client
    _http: httpx.Client

    def close(self) -> None:
        self._http.close()

    def _request(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """``method path`` on ``service``; the answer when it succeeded, else :meth:`failed`'s exception."""
        try:
            response = self._http.request(method, self.url(service, path), **kwargs)
        except httpx.HTTPError as exc:
            raise self._no_answer(service, exc) from exc
        return self._checked(service, response)
