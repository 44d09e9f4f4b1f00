"""A pure-ASGI middleware that caps request bodies while they stream in (413 before the limit is passed).

A declared ``Content-Length`` over the limit is refused before one byte of the body is read; a chunked or
lying body is counted as it arrives and cut off the moment it passes the limit, so an oversized upload never
sits in memory or on disk. The answer is the common JSON error, whatever the application was doing when the
limit hit (FastAPI would otherwise report a failed form parse as a 400).
"""
from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.errors import PayloadTooLarge, error_body


class _BodyTooLarge(PayloadTooLarge):
    """Raised inside ``receive`` so the application stops reading."""


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB" if n >= 1024 * 1024 else f"{n:,} bytes"


class BodyLimitMiddleware:
    """Limit request bodies to ``default`` bytes, or to ``per_path[path]`` for the paths listed there."""

    def __init__(self, app: ASGIApp, default: int, per_path: Mapping[str, int] | None = None):
        self.app = app
        self.default = default
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.default)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_413(send, f"request body of {_mb(declared)} is over the limit of {_mb(limit)}")
            return

        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _BodyTooLarge(f"request body is over the limit of {_mb(limit)}")
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # whatever the app answers to the cut-off body, the client gets the 413 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            if started:
                raise
        if exceeded and not started:
            await _send_413(send, f"request body is over the limit of {_mb(limit)}")


async def _send_413(send: Send, message: str) -> None:
    body = json.dumps(error_body(PayloadTooLarge.code, message)).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
