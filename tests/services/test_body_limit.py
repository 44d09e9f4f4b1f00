"""The body-limit middleware by value, in process: a declared Content-Length over the limit is a 413 before
the application runs or one byte is read; at the limit the request goes through; streamed bodies are counted."""
from __future__ import annotations

import asyncio
import json

import pytest

from services.common.body_limit import BodyLimitMiddleware

LIMIT = 1000


class App:
    """Reads the whole body, then answers 200 with its length."""

    def __init__(self):
        self.called = False
        self.body = b""

    async def __call__(self, scope, receive, send):
        self.called = True
        while True:
            message = await receive()
            self.body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(self.body)).encode()})


def run(middleware, *, path="/predict", declared: int | None, chunks: list[bytes], with_headers: bool = True,
        response_headers: list | None = None):
    headers = [] if declared is None else [(b"content-length", str(declared).encode())]
    scope = {"type": "http", "path": path, "method": "POST", "headers": headers}
    if not with_headers:
        del scope["headers"]
    reads, sent = [], []
    pending = list(chunks)

    async def receive():
        chunk = pending.pop(0)
        reads.append(len(chunk))
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message):
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    status = start["status"]
    if response_headers is not None:
        response_headers.extend(start["headers"])
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, reads


def test_declared_length_over_the_limit_is_413_before_reading():
    app = App()
    status, body, reads = run(BodyLimitMiddleware(app, LIMIT), declared=LIMIT + 1, chunks=[b"x" * (LIMIT + 1)])
    assert status == 413 and reads == [] and not app.called
    err = json.loads(body)["error"]
    assert err["code"] == "too_large" and "1,001 bytes" in err["message"] and "1,000 bytes" in err["message"]


def test_declared_length_at_the_limit_goes_through():
    app = App()
    status, body, reads = run(BodyLimitMiddleware(app, LIMIT), declared=LIMIT, chunks=[b"x" * LIMIT])
    assert (status, body, reads) == (200, str(LIMIT).encode(), [LIMIT]) and app.called


def test_per_path_limit_applies_to_its_path_only():
    middleware = BodyLimitMiddleware(App(), LIMIT, per_path={"/predict/study": 3 * LIMIT})
    assert run(middleware, path="/predict/study", declared=2 * LIMIT, chunks=[b"x" * 2 * LIMIT])[0] == 200
    assert run(middleware, path="/predict", declared=2 * LIMIT, chunks=[b"x" * 2 * LIMIT])[0] == 413


@pytest.mark.parametrize("declared", [None, 10])  # no length, or a lying one
def test_streamed_body_is_counted_and_cut_at_the_limit(declared):
    app = App()
    chunks = [b"x" * 400] * 3  # 1200 > 1000
    status, body, reads = run(BodyLimitMiddleware(app, LIMIT), declared=declared, chunks=chunks)
    assert status == 413 and json.loads(body)["error"]["code"] == "too_large"
    assert reads == [400, 400, 400] and len(app.body) == 800  # the chunk that passed the limit never reached it


def test_streamed_body_at_the_limit_goes_through():
    status, body, _ = run(BodyLimitMiddleware(App(), LIMIT), declared=None, chunks=[b"x" * 500, b"x" * 500])
    assert (status, body) == (200, b"1000")


def test_scope_without_headers_is_counted_as_it_streams():
    assert run(BodyLimitMiddleware(App(), LIMIT), declared=None, chunks=[b"x" * 10], with_headers=False)[0] == 200
    assert run(BodyLimitMiddleware(App(), LIMIT), declared=None, chunks=[b"x" * 2000], with_headers=False)[0] == 413


@pytest.mark.parametrize("declared", [30 * 1024 * 1024, None])
def test_413_is_a_complete_json_response_with_sizes_in_megabytes(declared):
    limit = 25 * 1024 * 1024
    headers: list = []
    chunks = [b"x" * (13 * 1024 * 1024)] * 2  # 26 MB streamed when no length is declared
    status, body, _ = run(BodyLimitMiddleware(App(), limit), declared=declared, chunks=chunks,
                          response_headers=headers)
    assert status == 413
    assert dict(headers) == {b"content-type": b"application/json", b"content-length": str(len(body)).encode(),
                             b"connection": b"close"}
    message = json.loads(body)["error"]["message"]
    assert "over the limit of 25.0 MB" in message
    if declared:
        assert message.startswith("request body of 30.0 MB")

