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
