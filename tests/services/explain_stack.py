"""The explain service as real processes for tests: redis-server, the API under uvicorn, and workers.

Everything started here is ended by ``ExplainStack.close()`` (the fixture calls it in ``finally``), also
when a test fails halfway. Timings are shortened so that recovery paths run in seconds.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from redis import Redis
from rq import Worker

from services.common.auth import tenant_id
from tests.services.conftest import REPO, ServerProcess, run_server
from tests.services.redis_server import RedisServer

API_KEY = "explain-test-key-1"
# What a job queued straight onto Redis needs in its meta for API_KEY to see it (jobs are per key).
TENANT = tenant_id(API_KEY)
TTL_S = 4

# Shared by the API and the workers (they must agree on the queue and the TTL).
FAST_ENV = {
    "DISEASEID_API_KEYS": API_KEY,
    "DISEASEID_TORCH_THREADS": "1",
    "DISEASEID_DEVICE": "cpu",
    "DISEASEID_MAX_UPLOAD_BYTES": "300000",
    "DISEASEID_EXPLAIN_TTL_S": str(TTL_S),
    "DISEASEID_EXPLAIN_JOB_TIMEOUT_S": "60",
    "DISEASEID_EXPLAIN_RETRIES": "2",
    "DISEASEID_EXPLAIN_MAX_WAIT_S": "10",
    "DISEASEID_EXPLAIN_REDIS_CONNECT_TIMEOUT_S": "0.5",
    # A killed worker's job is presumed abandoned ~2 s after its last heartbeat, and found within ~1 s more.
    "DISEASEID_EXPLAIN_HEARTBEAT_INTERVAL_S": "0.5",
    "DISEASEID_EXPLAIN_ABANDONED_GRACE_S": "1",
    "DISEASEID_EXPLAIN_MAINTENANCE_INTERVAL_S": "1",
    "DISEASEID_EXPLAIN_IDLE_POLL_S": "1",
    "DISEASEID_EXPLAIN_WORKER_TTL_S": "5",
    "DISEASEID_EXPLAIN_PRELOAD": "tumor/student,dementia/teacher",  # what the tests use
    # Seals images and maps in Redis (services.explain.sealing); a fixed key, so no key file is written.
    "DISEASEID_STORE_KEY": "dGVzdC1vbmx5LXN0b3JlLWtleS0zMi1ieXRlcy0wMDA=",
    "PYTHONUNBUFFERED": "1",
}


@dataclass
class WorkerProcess:
    proc: subprocess.Popen
    log_path: Path
    name: str = ""
    faulty: bool = False  # started with fault injection; not handed out by ensure_worker

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (RQ's warm shutdown), then SIGKILL if it lingers."""
        if not self.alive:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass


@dataclass
class ExplainStack:
    redis: RedisServer
    env: dict[str, str]
    api: ServerProcess | None = None
    workers: list[WorkerProcess] = field(default_factory=list)
    _exit: ExitStack = field(default_factory=ExitStack)

    @classmethod
    def start(cls, redis: RedisServer | None = None, **env: str) -> ExplainStack:
        """Redis (``redis``, else a new one without persistence) and the API (no worker yet); ``env`` overrides
        ``FAST_ENV`` for the API and every worker. The stack closes the Redis server too."""
        redis = (redis or RedisServer()).start()
        stack = cls(redis=redis, env={**FAST_ENV, **env, "REDIS_URL": redis.url})
        try:
            stack.api = stack._exit.enter_context(
                run_server("services.explain.api.main:app", stack.env, ready_path="/healthz"))
        except BaseException:
            stack.close()
            raise
        return stack

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
            worker.log_path.unlink(missing_ok=True)
        self._exit.close()
        self.redis.close()

    # -- clients ---------------------------------------------------------------------------------------
    def client(self, key: str | None = API_KEY) -> httpx.Client:
        headers = {"X-API-Key": key} if key else {}
        return httpx.Client(base_url=self.api.url, headers=headers, timeout=30)

    def redis_client(self) -> Redis:
        return Redis.from_url(self.redis.url)

    # -- workers ---------------------------------------------------------------------------------------
    def start_worker(self, timeout: float = 90.0, module: str = "services.explain.worker", **env: str
                     ) -> WorkerProcess:
        """``python -m services.explain.worker`` (or another ``module`` that runs it); returns once it has registered
        with Redis (within ``timeout``, or ``$DISEASEID_TEST_READY_S`` where set, as for the servers)."""
        timeout = float(os.environ.get("DISEASEID_TEST_READY_S") or timeout)
        log = tempfile.NamedTemporaryFile(prefix="explain-worker-", suffix=".log", delete=False)
        proc = subprocess.Popen([sys.executable, "-m", module], cwd=REPO,
                                env={**os.environ, **self.env, **env}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        worker = WorkerProcess(proc, Path(log.name), faulty=bool(env))
        self.workers.append(worker)
        deadline = time.monotonic() + timeout
        with self.redis_client() as r:
            while not worker.name:
                if not worker.alive:
                    raise RuntimeError(f"worker exited with {proc.returncode}:\n{worker.log_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker not registered after {timeout:.0f} s:\n"
                                       + worker.log_text()[-3000:])
                worker.name = next((w.name for w in Worker.all(connection=r) if w.pid == proc.pid), "")
                time.sleep(0.1)
        return worker

    def ensure_worker(self) -> WorkerProcess:
        """A running worker without fault injection (started on first need, then shared)."""
        for worker in self.workers:
            if worker.alive and not worker.faulty:
                return worker
        return self.start_worker()


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 60.0) -> dict:
    """Long-poll ``GET /explain/{job_id}`` until the job finished or failed."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/explain/{job_id}", params={"wait": 5})
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] in ("finished", "failed"):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {body['status']} after {timeout:.0f} s")
