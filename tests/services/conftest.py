"""Shared fixtures for service tests: real uvicorn servers in subprocesses.

:func:`run_server` starts any ``module:app`` with the given environment on a free loopback port, waits
until a readiness path answers 200, and always ends the process (and its process group) when the block
exits, also on failure. Other service tests reuse it::

    from tests.services.conftest import run_server
    with run_server("services.explain.api.main:app", {"REDIS_URL": url}, ready_path="/healthz") as server:
        httpx.get(server.url + "/healthz")
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
TEST_KEYS = ("test-key-alpha-123", "test-key-beta-456")


@dataclass
class ServerProcess:
    url: str
    proc: subprocess.Popen
    log_path: Path

    def log_text(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)  # the group we created for it: uvicorn and anything it spawned
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def run_server(app: str, env: dict[str, str] | None = None, *, ready_path: str = "/healthz",
               timeout: float = 90.0, args: tuple[str, ...] = ()) -> Iterator[ServerProcess]:
    """``uvicorn <app>`` on a free port with ``env`` added to ours; yields once ``ready_path`` answers 200.

    Torch uses one thread unless ``env`` says otherwise (the CI box has two cores for everything).
    ``$DISEASEID_TEST_READY_S`` replaces ``timeout`` (a machine busy with other work starts servers slowly).
    """
    timeout = float(os.environ.get("DISEASEID_TEST_READY_S") or timeout)
    port = free_port()
    full_env = {**os.environ, "DISEASEID_TORCH_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    log = tempfile.NamedTemporaryFile(prefix="server-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, Path(log.name))
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{app} exited with {proc.returncode}:\n{server.log_text()[-3000:]}")
            try:
                if httpx.get(server.url + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{app} not ready after {timeout:.0f} s:\n{server.log_text()[-3000:]}")
            time.sleep(0.1)
        yield server
    finally:
        _stop(proc)
        log.close()
        os.unlink(log.name)


def fixture_bytes(task: str, cls: str, index: int = 0) -> bytes:
    """The bytes of one fixture slice, e.g. ``fixture_bytes("tumor", "glioma")``."""
    return sorted((FIXTURES / task / cls).glob("*.jpg"))[index].read_bytes()


@pytest.fixture(scope="session")
def inference_server() -> Iterator[ServerProcess]:
    """The inference service in development mode (no API keys)."""
    env = {"DISEASEID_API_KEYS": ""}
    with run_server("services.inference.main:app", env, ready_path="/readyz") as server:
        yield server


@pytest.fixture(scope="session")
def inference_server_auth() -> Iterator[ServerProcess]:
    """The inference service with two API keys configured (``TEST_KEYS``)."""
    env = {"DISEASEID_API_KEYS": ",".join(TEST_KEYS)}
    with run_server("services.inference.main:app", env, ready_path="/readyz") as server:
        yield server


@pytest.fixture(scope="session")
def inference_client(inference_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=inference_server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def redis():
    """A real Redis server per test module (tests of the explain queue and store)."""
    from redis import Redis

    from tests.services.redis_server import RedisServer

    with RedisServer() as server:
        client = Redis.from_url(server.url)
        yield client
        client.close()


@pytest.fixture
def queue(redis):
    """The explain queue on an empty database."""
    from rq import Queue

    redis.flushdb()
    return Queue("explain", connection=redis)

