"""Upload limits and form validation by value (so that a mutated bound or message fails a test): the exact limits (at
the limit passes, one over is refused), the status and code of each refusal, and the messages users read. In process, no
server: the middleware is driven through ASGI messages and the validators are called directly."""
from __future__ import annotations

import asyncio
import json

import pytest
from starlette.datastructures import FormData

from services.common import body_limit
from services.common.body_limit import BodyLimitMiddleware
from services.common.errors import (
    InvalidFormValue,
    MalformedRequest,
    UnknownAggregation,
    UnknownModel,
    UnknownTask,
)
from services.common.validation import (
    AGGREGATIONS,
    MAX_FORM_CHARS,
    form_text,
    reject_repeated_fields,
    resolve_aggregation,
    resolve_model,
    resolve_task,
)

MB = 1024 * 1024


# ---- body limit -----------------------------------------------------------------------------------------


def drive(middleware, app_log: list, *, path="/predict", headers=None, chunks=(b"",), scope_type="http"):
    scope = {"type": scope_type, "path": path, "method": "POST", "headers": list(headers or [])}
    pending = list(chunks)
    sent: list[dict] = []

    async def receive():
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message):
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return sent


class EchoApp:
    """Reads the body, answers 200 with its length; records each call."""

    def __init__(self, log: list):
        self.log = log

    async def __call__(self, scope, receive, send):
        self.log.append(scope["type"])
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})


class EarlyAnswerApp:
    """Starts its response before reading the body (a streaming endpoint): a 413 cannot replace it any more."""

    async def __call__(self, scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.body", "body": b"done"})


class SwallowingApp:
    """Catches the cut-off (as a form parser that turns every error into a 400 would) and answers 400."""

    async def __call__(self, scope, receive, send):
        try:
            while (await receive()).get("more_body"):
                pass
        except Exception:  # noqa: BLE001 (what a careless app does)
            pass
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b"bad form"})


def status_and_message(sent: list[dict]) -> tuple[int, str | None]:
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if start["status"] != 413:
        return start["status"], None
    error = json.loads(body)["error"]
    assert error["code"] == "too_large"
    return 413, error["message"]


@pytest.mark.parametrize(("n", "text"), [(0, "0 bytes"), (999, "999 bytes"), (MB - 1, "1,048,575 bytes"),
                                          (MB, "1.0 MB"), (25 * MB, "25.0 MB"), (int(2.26 * MB), "2.3 MB"),
                                          (int(100.04 * MB), "100.0 MB")])
def test_sizes_are_shown_in_bytes_below_a_megabyte_and_in_megabytes_from_one(n, text):
    assert body_limit._mb(n) == text


def test_declared_length_messages_name_both_sizes():
    log: list = []
    sent = drive(BodyLimitMiddleware(EchoApp(log), MB), log, headers=[(b"content-length", str(MB + 1).encode())])
    assert status_and_message(sent) == (413, "request body of 1.0 MB is over the limit of 1.0 MB") and log == []
    sent = drive(BodyLimitMiddleware(EchoApp(log), 100), log, headers=[(b"content-length", b"101")])
    assert status_and_message(sent) == (413, "request body of 101 bytes is over the limit of 100 bytes")


def test_streamed_body_over_the_limit_message():
    log: list = []
    sent = drive(BodyLimitMiddleware(EchoApp(log), 100), log, chunks=[b"x" * 60, b"x" * 41])
    assert status_and_message(sent) == (413, "request body is over the limit of 100 bytes") and log == ["http"]
    # one chunk of exactly the limit, then an empty final chunk: 100 bytes in all, it goes through
    assert status_and_message(drive(BodyLimitMiddleware(EchoApp(log), 100), log, chunks=[b"x" * 100, b""])) \
        == (200, None)


def test_a_body_that_passes_the_limit_is_413_even_when_the_app_swallows_the_error():
    sent = drive(BodyLimitMiddleware(SwallowingApp(), 100), [], chunks=[b"x" * 80, b"x" * 80])
    assert status_and_message(sent) == (413, "request body is over the limit of 100 bytes")
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]  # the 400 never went out
    # within the limit the app's own answer goes out
    sent = drive(BodyLimitMiddleware(SwallowingApp(), 1000), [], chunks=[b"x" * 80, b"x" * 80])
    assert status_and_message(sent) == (400, None)


def test_once_the_response_started_the_cut_off_propagates():
    with pytest.raises(body_limit._BodyTooLarge, match="over the limit of 100 bytes"):
        drive(BodyLimitMiddleware(EarlyAnswerApp(), 100), [], chunks=[b"x" * 80, b"x" * 80])
    sent = drive(BodyLimitMiddleware(EarlyAnswerApp(), 1000), [], chunks=[b"x" * 80, b"x" * 80])
    assert status_and_message(sent) == (200, None) and sent[-1]["body"] == b"done"
    assert issubclass(body_limit._BodyTooLarge, body_limit.PayloadTooLarge)


def test_a_malformed_content_length_is_ignored_and_the_body_counted():
    log: list = []
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"ten")]
    assert status_and_message(drive(BodyLimitMiddleware(EchoApp(log), 100), log, headers=headers,
                                    chunks=[b"x" * 50]))[0] == 200
    assert status_and_message(drive(BodyLimitMiddleware(EchoApp(log), 100), log, headers=headers,
                                    chunks=[b"x" * 101]))[0] == 413
    # the length is found among other headers, whatever its position
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"101"), (b"x-other", b"1")]
    assert body_limit._content_length({"headers": headers}) == 101
    assert body_limit._content_length({"headers": [(b"content-length", b"ten"), (b"content-length", b"5")]}) is None
    assert body_limit._content_length({}) is None


def test_non_http_scopes_pass_untouched():
    log: list = []

    class LifespanApp:
        async def __call__(self, scope, receive, send):
            log.append(scope["type"])
            log.append(await receive())  # the server's own receive, not a counting one
            await send({"type": "lifespan.startup.complete"})

    sent = drive(BodyLimitMiddleware(LifespanApp(), 1), log, scope_type="lifespan",
                 headers=[(b"content-length", b"100")], chunks=[b"x" * 50])
    assert log == ["lifespan", {"type": "http.request", "body": b"x" * 50, "more_body": False}]
    assert sent == [{"type": "lifespan.startup.complete"}]


def test_an_app_that_does_not_answer_gets_no_answer_from_the_middleware():
    """Within the limit the middleware never speaks for the app (the server reports the missing response)."""

    class SilentApp:
        async def __call__(self, scope, receive, send):
            while (await receive()).get("more_body"):
                pass

    assert drive(BodyLimitMiddleware(SilentApp(), 100), [], chunks=[b"x" * 50, b"x" * 50]) == []


def test_per_path_limits_and_the_default():
    log: list = []
    middleware = BodyLimitMiddleware(EchoApp(log), 100, per_path={"/predict/study": 300})
    assert middleware.default == 100 and middleware.per_path == {"/predict/study": 300}
    assert BodyLimitMiddleware(EchoApp(log), 100).per_path == {}
    declared = lambda n: [(b"content-length", str(n).encode())]  # noqa: E731
    assert status_and_message(drive(middleware, log, path="/predict/study", headers=declared(300),
                                    chunks=[b"x" * 300]))[0] == 200
    assert status_and_message(drive(middleware, log, path="/predict/study", headers=declared(301),
                                    chunks=[b"x" * 301])) == (413, "request body of 301 bytes is over the limit "
                                                                   "of 300 bytes")
    assert status_and_message(drive(middleware, log, path="/predict/study", chunks=[b"x" * 200, b"x" * 101])) \
        == (413, "request body is over the limit of 300 bytes")
    assert status_and_message(drive(middleware, log, path="/predict", chunks=[b"x" * 101]))[0] == 413


# ---- form values ----------------------------------------------------------------------------------------


def test_form_text_values_and_refusals():
    assert form_text(None, "task") == ""
    assert form_text("  tumor \n", "task") == "tumor"
    assert form_text("x" * MAX_FORM_CHARS, "task") == "x" * MAX_FORM_CHARS  # at the limit
    assert MAX_FORM_CHARS == 200
    with pytest.raises(InvalidFormValue, match=r"^field 'task' is over 200 characters$") as exc:
        form_text("x" * (MAX_FORM_CHARS + 1), "task")
    assert exc.value.status == 422 and exc.value.code == "invalid_form_value"
    with pytest.raises(UnknownTask, match=r"^field 'task' is over 5 characters$"):
        form_text("abcdef", "task", max_chars=5, error=UnknownTask)
    assert form_text("abcde", "task", max_chars=5) == "abcde"
    with pytest.raises(InvalidFormValue, match=r"^field 'target' holds control or unprintable characters$"):
        form_text("glio\x00ma", "target")
    with pytest.raises(MalformedRequest, match=r"^field 'task' must be a text value, not a file$") as exc:
        form_text(b"tumor", "task")
    assert exc.value.status == 400 and exc.value.code == "malformed_request"


def test_resolve_task_model_and_aggregation():
    assert resolve_task("tumor").name == "tumor" and resolve_task(" dementia ").name == "dementia"
    with pytest.raises(UnknownTask, match=r"^unknown task 'glioma'; choose one of: dementia, tumor$"):
        resolve_task("glioma")
    with pytest.raises(UnknownTask, match=r"^unknown task ''; choose one of: dementia, tumor$"):
        resolve_task(None)
    with pytest.raises(UnknownTask, match=r"^field 'task' holds control or unprintable characters$"):
        resolve_task("tu\x07mor")
    # long or unprintable values are never echoed
    with pytest.raises(UnknownTask, match=r"^unknown task \(unprintable or too long\); choose one of"):
        resolve_task("t" * 41)
    with pytest.raises(UnknownTask, match=r"^unknown task '" + "t" * 40 + "'; choose"):
        resolve_task("t" * 40)
    with pytest.raises(UnknownTask, match=r"^field 'task' is over 200 characters$"):
        resolve_task("t" * 201)

    assert resolve_model(None) == "student" and resolve_model("  ") == "student"
    assert resolve_model("teacher") == "teacher" and resolve_model(None, "teacher") == "teacher"
    with pytest.raises(UnknownModel, match=r"^unknown model 'vgg16'; choose one of: student, teacher$") as exc:
        resolve_model("vgg16")
    assert exc.value.status == 422 and exc.value.code == "unknown_model"
    with pytest.raises(UnknownModel, match=r"^field 'model' holds control or unprintable characters$"):
        resolve_model("stu\x1bdent")

    assert AGGREGATIONS == ("auto", "mil", "mean")
    assert resolve_aggregation(None) == "auto" and resolve_aggregation("") == "auto"
    assert resolve_aggregation(" mil ") == "mil" and resolve_aggregation("mean") == "mean"
    with pytest.raises(UnknownAggregation, match=r"^unknown aggregate 'max'; choose one of: auto, mil, mean$") as exc:
        resolve_aggregation("max")
    assert exc.value.status == 422 and exc.value.code == "unknown_aggregation"
    with pytest.raises(UnknownAggregation, match=r"^field 'aggregate' holds control or unprintable characters$"):
        resolve_aggregation("m\x00il")


def test_repeated_fields_are_a_400_naming_at_most_three():
    reject_repeated_fields(FormData([("task", "tumor"), ("file", "a")]))
    reject_repeated_fields(FormData([("files", "a"), ("files", "b"), ("task", "tumor")]), multiple=["files"])
    with pytest.raises(MalformedRequest, match=r"^field 'task' was sent more than once; send it once$") as exc:
        reject_repeated_fields(FormData([("task", "tumor"), ("file", "a"), ("task", "tumor")]))
    assert exc.value.status == 400
    with pytest.raises(MalformedRequest, match=r"^field 'files' was sent"):  # not allowed here
        reject_repeated_fields(FormData([("files", "a"), ("files", "b")]), multiple=["methods"])
    many = [(k, "v") for k in ("e", "d", "c", "b", "a") for _ in range(2)] + [("z", "1")]
    with pytest.raises(MalformedRequest, match=r"^field 'a', 'b', 'c' was sent more than once; send it once$"):
        reject_repeated_fields(FormData(many), multiple=["q"])
    with pytest.raises(MalformedRequest, match=r"^field \(unprintable or too long\) was sent"):
        reject_repeated_fields(FormData([("k" * 41, "1"), ("k" * 41, "2")]))
    # three times is repeated too
    with pytest.raises(MalformedRequest, match="'model'"):
        reject_repeated_fields(FormData([("model", "a"), ("model", "b"), ("model", "c")]))
