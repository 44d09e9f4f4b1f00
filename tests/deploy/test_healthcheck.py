"""``python -m services.common.healthcheck``: the container probes, against a real HTTP server and a real Redis."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from redis import Redis
from rq import Queue, Worker

from services.common.healthcheck import WorkerProbeSettings
from services.explain.settings import ExplainSettings
from tests.services.conftest import REPO
from tests.services.redis_server import RedisServer


def probe(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.common.healthcheck", *args], cwd=REPO,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=30)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        code = 200 if self.path == "/readyz" else 503
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_probe_passes_only_on_200(http_url) -> None:
    assert probe(f"{http_url}/readyz").returncode == 0
    busy = probe(f"{http_url}/loading")
    assert busy.returncode == 1 and "503" in busy.stderr
    assert probe("http://127.0.0.1:9/readyz", "--timeout", "1").returncode == 1  # nothing listens


def test_worker_probe_needs_a_fresh_heartbeat_from_this_host() -> None:
    with RedisServer() as server:
        env = {"REDIS_URL": server.url, "DISEASEID_EXPLAIN_QUEUE": "explain-probe-test"}
        assert probe("--explain-worker", env=env).returncode == 1  # no worker at all
        with Redis.from_url(server.url) as connection:
            worker = Worker([Queue("explain-probe-test", connection=connection)], connection=connection)
            worker.register_birth()
            worker.heartbeat()
            result = probe("--explain-worker", env=env)
            assert result.returncode == 0, result.stderr
            # A worker of another queue does not count.
            assert probe("--explain-worker", env={**env, "DISEASEID_EXPLAIN_QUEUE": "other"}).returncode == 1
            worker.register_death()
    assert probe("--explain-worker", env=env).returncode == 1  # Redis gone


@pytest.mark.parametrize("env", [
    {},
    {"REDIS_URL": "redis://a:1/2", "DISEASEID_EXPLAIN_QUEUE": "q", "DISEASEID_EXPLAIN_WORKER_TTL_S": "7"},
    {"DISEASEID_EXPLAIN_REDIS_URL": "redis://b:3/0"},
    {"DISEASEID_EXPLAIN_HEARTBEAT_INTERVAL_S": "0.5", "DISEASEID_EXPLAIN_IDLE_POLL_S": "2"},
    {"REDIS_URL": "redis://first:1/0", "DISEASEID_EXPLAIN_REDIS_URL": "redis://second:1/0"},
])
def test_worker_probe_reads_the_environment_as_the_explain_settings_do(env, monkeypatch) -> None:
    for name in ("REDIS_URL", "DISEASEID_EXPLAIN_REDIS_URL", "DISEASEID_EXPLAIN_QUEUE",
                 "DISEASEID_EXPLAIN_WORKER_TTL_S", "DISEASEID_EXPLAIN_HEARTBEAT_INTERVAL_S",
                 "DISEASEID_EXPLAIN_IDLE_POLL_S"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = ExplainSettings(_env_file=None)
    probe_settings = WorkerProbeSettings.from_env()
    assert (probe_settings.redis_url, probe_settings.queue, probe_settings.heartbeat_fresh_s) == (
        settings.redis_url, settings.queue, settings.heartbeat_fresh_s)
