"""API keys: required when configured (either key works), absent in development mode, never logged."""
from __future__ import annotations

import httpx
import pytest

from tests.services.conftest import TEST_KEYS, fixture_bytes

JPEG = fixture_bytes("tumor", "glioma")


def predict(url: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url + "/predict", files={"file": ("a.jpg", JPEG, "image/jpeg")}, data={"task": "tumor"},
                      headers=headers, timeout=30)


@pytest.fixture(scope="module")
def auth_url(inference_server_auth) -> str:
    return inference_server_auth.url


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": ""}, {"X-API-Key": "wrong"},
                                     {"X-API-Key": TEST_KEYS[0] + "x"}, {"Authorization": TEST_KEYS[0]},
                                     # strict prefixes of a valid key, down to one character
                                     {"X-API-Key": TEST_KEYS[0][:-1]}, {"X-API-Key": TEST_KEYS[1][:9]},
                                     {"X-API-Key": TEST_KEYS[1][:1]}])
def test_missing_or_wrong_key_is_401(auth_url, headers):
    r = predict(auth_url, headers)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert "X-API-Key" in r.json()["error"]["message"]


def test_every_configured_key_is_accepted(auth_url):
    for key in TEST_KEYS:
        r = predict(auth_url, {"X-API-Key": key})
        assert r.status_code == 200, r.text
    study = httpx.post(auth_url + "/predict/study", files=[("files", ("a.jpg", JPEG, "image/jpeg"))],
                       data={"task": "tumor"}, headers={"X-API-Key": TEST_KEYS[1]}, timeout=30)
    assert study.status_code == 200
    assert httpx.post(auth_url + "/predict/study", data={"task": "tumor"}).status_code == 401


def test_probes_and_scrapes_need_no_key(auth_url):
    for path in ("/healthz", "/readyz", "/metrics", "/models", "/openapi.json"):
        assert httpx.get(auth_url + path).status_code == 200, path


def test_openapi_documents_the_key(auth_url):
    spec = httpx.get(auth_url + "/openapi.json").json()
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"


def test_keys_never_reach_the_log_and_the_mode_is_announced(inference_server_auth, inference_server):
    predict(inference_server_auth.url, {"X-API-Key": TEST_KEYS[0]})
    log = inference_server_auth.log_text()
    assert "API-key authentication on (2 keys configured)" in log
    assert not any(k in log for k in TEST_KEYS)
    assert "DEVELOPMENT MODE" not in log
    dev_log = inference_server.log_text()
    assert "DEVELOPMENT MODE" in dev_log and "DISEASEID_API_KEYS is empty" in dev_log


def test_development_mode_accepts_any_or_no_key(inference_server):
    for headers in ({}, {"X-API-Key": "anything"}):
        assert predict(inference_server.url, headers).status_code == 200
