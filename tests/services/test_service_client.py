"""The base of our services' clients (services.common.service_client), over real HTTP on loopback: our JSON
error comes back as an exception with the service's status, code and message, other error bodies are read too,
no answer is told apart from a timeout, and each client (bot, web page, PACS bridge) turns the same answer into
its own error."""
from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator

import httpx
import pytest

from services.bot.client import DiseaseIdClient, InputRejected, ServiceTimeout, ServiceUnavailable
from services.common.service_client import AsyncServiceClient, ServiceCallError, ServiceClient, read_error
from services.pacs.client import Failed, Unavailable
from services.pacs.client import ServicesClient as BridgeClient
from services.web.client import ServicesClient as PageClient
from services.web.client import UpstreamError
from tests.helpers import QuietHandler, free_port, http_server

KEY = "k-123"
PROXY_PAGE = "<html>Bad Gateway</html>" + "x" * 500
# path -> (status, body, content type) the loopback server answers with; any other path echoes the X-API-Key.
ANSWERS = {
    "/predict": (422, {"error": {"code": "unknown_task", "message": "no task 'lungs'"}}, "application/json"),
    "/busy": (503, {"error": {"code": "busy", "message": "too many requests at once"}}, "application/json"),
    "/refused": (401, {"error": {"code": "unauthorized", "message": "bad key"}}, "application/json"),
    "/fastapi": (405, {"detail": "Method Not Allowed"}, "application/json"),
    "/proxy": (502, PROXY_PAGE, "text/html"),
    "/list": (400, ["not", "ours"], "application/json"),
    "/empty": (404, {"error": {"code": None, "message": None}}, "application/json"),
}


class _Handler(QuietHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.reply(*ANSWERS.get(self.path, (200, {"key": self.headers["X-API-Key"]})))


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with http_server(_Handler) as base:
        yield base


@pytest.fixture(scope="module")
def free() -> str:
    """A port nothing listens on (a service that is down)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def silent() -> Iterator[str]:
    """A port that accepts connections and never answers (a hung service)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def call_sync(client: ServiceClient, path: str, service: str = "inference") -> httpx.Response:
    try:
        return client._request(service, "GET", path)
    finally:
        client.close()


def call_async(client: AsyncServiceClient, path: str, service: str = "inference") -> httpx.Response:
    async def go():
        try:
            return await client._request(service, "GET", path)
        finally:
            await client.aclose()
    return asyncio.run(go())


CALLS = {"sync": (ServiceClient, call_sync), "async": (AsyncServiceClient, call_async)}


def raised(client: ServiceClient | AsyncServiceClient, path: str) -> Exception:
    """What ``GET path`` on the inference URL of ``client`` raised (it must raise)."""
    call = call_async if isinstance(client, AsyncServiceClient) else call_sync
    with pytest.raises(Exception) as info:
        call(client, path)
    return info.value


@pytest.mark.parametrize("kind", CALLS)
def test_success_carries_the_key_and_goes_to_the_right_service(kind, url, free):
    cls, call = CALLS[kind]
    # Only the explain URL is served: a call to "explain" must go there, not to the inference URL.
    response = call(cls(free, url + "/", api_key=KEY, timeout_s=5), "/anything", service="explain")
    assert response.status_code == 200 and response.json() == {"key": KEY}
    assert call(cls(url, url, timeout_s=5), "/anything").json() == {"key": None}


@pytest.mark.parametrize("kind", CALLS)
@pytest.mark.parametrize(("path", "status", "code", "message"), [
    ("/predict", 422, "unknown_task", "no task 'lungs'"),
    ("/busy", 503, "busy", "too many requests at once"),
    ("/fastapi", 405, None, "Method Not Allowed"),
    ("/proxy", 502, None, PROXY_PAGE[:200]),
    ("/list", 400, None, "['not', 'ours']"),
    ("/empty", 404, None, ""),
])
def test_an_error_answer_becomes_the_error_with_its_status_code_and_message(kind, url, path, status, code,
                                                                             message):
    error = raised(CALLS[kind][0](url, url, timeout_s=5), path)
    assert type(error) is ServiceCallError
    assert (error.service, error.status, error.code, error.message, error.timed_out) == (
        "inference", status, code, message, False)
    assert str(error) == f"inference: {message}"


@pytest.mark.parametrize("kind", CALLS)
def test_a_refused_key_is_logged_for_the_operator(kind, url, caplog):
    with caplog.at_level(logging.ERROR, logger="services.common.service_client"):
        error = raised(CALLS[kind][0](url, url, api_key="wrong", timeout_s=5), "/refused")
    assert (error.status, error.code) == (401, "unauthorized")
    assert "check DISEASEID_API_KEY" in caplog.text and "wrong" not in caplog.text


@pytest.mark.parametrize("kind", CALLS)
def test_no_answer_is_told_from_a_timeout(kind, free, silent):
    cls = CALLS[kind][0]
    down = raised(cls(free, free, timeout_s=5), "/predict")
    assert (down.status, down.code, down.timed_out, down.message) == (None, None, False, "ConnectError")
    hung = raised(cls(silent, silent, timeout_s=0.3), "/predict")
    assert (hung.status, hung.code, hung.timed_out, hung.message) == (None, None, True, "timed out")


def test_read_error_of_a_body_that_is_not_json_or_not_strings():
    assert read_error(httpx.Response(500, text="Internal Server Error")) == (None, "Internal Server Error")
    assert read_error(httpx.Response(500, json={"error": {"code": 7, "message": 8}})) == ("7", "8")


# -- each client's own errors for the same answers ----------------------------------------------------------

def test_the_bot_tells_a_refused_image_from_a_service_to_try_later(url, free, silent):
    refused = raised(DiseaseIdClient(url, url), "/predict")
    assert type(refused) is InputRejected
    assert (refused.status, refused.code, refused.message) == (422, "unknown_task", "no task 'lungs'")
    later = [raised(DiseaseIdClient(url, url), p) for p in ("/busy", "/refused", "/proxy")]
    assert [type(e) for e in later] == [ServiceUnavailable] * 3 and later[0].code == "busy"
    assert type(raised(DiseaseIdClient(free, free), "/predict")) is ServiceUnavailable
    assert type(raised(DiseaseIdClient(silent, silent, timeout_s=0.3), "/predict")) is ServiceTimeout


def test_the_page_keeps_the_services_status_and_code(url, free, silent):
    errors = [raised(PageClient(url, url), "/predict"), raised(PageClient(url, url), "/fastapi"),
              raised(PageClient(url, url), "/refused"),  # the page's key, not the person's upload
              raised(PageClient(free, free), "/x"), raised(PageClient(silent, silent, timeout_s=0.3), "/x")]
    assert all(type(e) is UpstreamError for e in errors)
    assert [(e.status, e.code, e.message) for e in errors] == [
        (422, "unknown_task", "no task 'lungs'"), (405, "http_error", "Method Not Allowed"),
        (503, "unavailable", "the service refused the page's API key"), (503, "unavailable", "ConnectError"),
        (504, "timeout", "no answer in time")]


def test_the_bridge_tells_the_services_state_from_the_series_failure(url, free, silent):
    failed = raised(BridgeClient(url, url), "/predict")
    assert type(failed) is Failed and (failed.status, failed.code) == (422, "unknown_task")
    assert [type(raised(BridgeClient(url, url), p)) for p in ("/busy", "/refused", "/proxy", "/list")] == [
        Unavailable, Unavailable, Unavailable, Failed]
    assert raised(BridgeClient(url, url), "/empty").message == "HTTP 404"
    assert type(raised(BridgeClient(free, free), "/x")) is Unavailable
    # Too slow for this series: counted against it, not the services' state.
    assert type(raised(BridgeClient(silent, silent, timeout_s=0.3), "/x")) is Failed


def test_each_client_keeps_its_own_default_timeout():
    assert [c("http://a", "http://b").timeout_s for c in (DiseaseIdClient, PageClient, BridgeClient)] == [
        30.0, 120.0, 60.0]
