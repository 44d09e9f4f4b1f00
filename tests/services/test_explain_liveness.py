"""A worker's death is known within 5 s (a killed worker must not leave its job running forever): explain ``/readyz``
turns 503 and the job it was running goes back on the queue, with the production heartbeat timings (5 s beats, 20 s
grace, 15 s maintenance), so that the bound comes from the workers' Redis connections (services.explain.recovery), not
from short test timings. A live worker's running job is never taken from it.

First the recovery itself against a real Redis and real RQ workers in subprocesses (plain ``SimpleWorker``s
running ``time.sleep``: no models), then the whole explain stack."""
from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid

import pytest
from rq import Queue, Retry
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from services.explain.liveness import alive_workers
from services.explain.recovery import connected_workers, gone_workers, requeue_orphans
from services.explain.redis_store import ExplainStore
from tests.services.conftest import REPO, fixture_bytes
from tests.services.explain_stack import ExplainStack

PRODUCTION_TIMINGS = {
    "DISEASEID_EXPLAIN_HEARTBEAT_INTERVAL_S": "5",
    "DISEASEID_EXPLAIN_ABANDONED_GRACE_S": "20",
    "DISEASEID_EXPLAIN_MAINTENANCE_INTERVAL_S": "15",
    "DISEASEID_EXPLAIN_IDLE_POLL_S": "5",
    "DISEASEID_EXPLAIN_WORKER_TTL_S": "60",
    "DISEASEID_EXPLAIN_PRELOAD": "tumor/student",
    "DISEASEID_EXPLAIN_WARMUP": "false",
}


def until(condition, timeout: float, step: float = 0.05) -> float:
    """Seconds until ``condition()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"not within {timeout} s"
        time.sleep(step)
    return time.monotonic() - start


FAKE_WORKER = """
import sys, redis, rq
from services.explain.recovery import CONNECTION_NAME_FIELD
from services.explain.redis_store import ExplainStore
url, name, named = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
client = ExplainStore.worker_client_name(name)
conn = redis.Redis.from_url(url, **({"client_name": client} if named else {}))
class Worker(rq.SimpleWorker):
    def serialize(self):
        return {**super().serialize(), **({CONNECTION_NAME_FIELD: client} if named else {})}
Worker([rq.Queue("explain", connection=conn)], connection=conn, name=name).work(burst=True)
"""


def run_one_job(queue: Queue, named: bool) -> tuple[subprocess.Popen, str, Job]:
    """A job sleeping 60 s, started by a worker process (which names its connections, or not)."""
    job = queue.enqueue("time.sleep", 60, retry=Retry(max=1), job_timeout=120)
    name = uuid.uuid4().hex
    url = "redis://{host}:{port}/{db}".format(**queue.connection.get_connection_kwargs())
    proc = subprocess.Popen([sys.executable, "-c", FAKE_WORKER, url, name, "1" if named else "0"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    until(lambda: job.get_status(refresh=True) == JobStatus.STARTED, 60)
    return proc, name, job


def test_a_dead_workers_job_is_handed_back_at_once_and_a_live_ones_never(redis):
    redis.flushdb()
    queue, store = Queue("explain", connection=redis), ExplainStore(redis, 60)
    proc, name, job = run_one_job(queue, named=True)
    try:
        assert name in connected_workers(redis)
        assert requeue_orphans(queue, store, settle_s=0) == []  # alive: its job stays with it
        assert [w.name for w in alive_workers(queue, 30, lambda n: gone_workers(redis, n, 0))] == [name]
        proc.kill()
        proc.wait()
        # The kernel closed its socket; Redis notices on its next event-loop turn.
        until(lambda: gone_workers(redis, [name], 0) == {name}, 2)
        assert alive_workers(queue, 30, lambda n: gone_workers(redis, n, 0)) == []
        assert [w.name for w in alive_workers(queue, 30)] == [name]  # its heartbeat alone would still count
        assert requeue_orphans(queue, store, settle_s=10 ** 9) == []  # Redis "just restarted": not trusted
        assert requeue_orphans(queue, store, settle_s=0) == [job.id]
        assert requeue_orphans(queue, store, settle_s=0) == []  # once
        job.refresh()
        assert job.get_status() == JobStatus.QUEUED and job.retries_left == 0 and queue.job_ids == [job.id]
        assert job.meta["error_kind"] == "abandoned" and "stopped before finishing" in job.meta["error"]
        assert StartedJobRegistry(queue=queue).count == 0 and store.counts()["failures_abandoned"] == 1
    finally:
        proc.kill()
        proc.wait()


def test_a_worker_that_does_not_name_its_connections_is_left_to_the_heartbeat(redis):
    redis.flushdb()
    queue, store = Queue("explain", connection=redis), ExplainStore(redis, 60)
    proc, name, job = run_one_job(queue, named=False)
    proc.kill()
    proc.wait()
    time.sleep(0.5)
    assert gone_workers(redis, [name], 0) == set() and requeue_orphans(queue, store, settle_s=0) == []
    assert job.get_status(refresh=True) == JobStatus.STARTED  # RQ's registry TTL will hand it back


@pytest.mark.slow
def test_readyz_and_requeue_within_5_s_of_a_workers_death():
    # Redis must have run a few seconds before connections are trusted (reconnect_settle_s = 6 s here); the
    # worker's start takes longer than that anyway.
    stack = ExplainStack.start(**PRODUCTION_TIMINGS)
    try:
        with stack.client() as client, stack.redis_client() as r:
            worker = stack.start_worker(DISEASEID_EXPLAIN_DEBUG_DELAY_S="30")  # the job is mid-run when killed
            assert ExplainStore.worker_client_name(worker.name).endswith(worker.name)
            assert worker.name in connected_workers(r)
            until(lambda: client.get("/readyz").status_code == 200, 15)
            accepted = client.post("/explain", data={"task": "tumor", "methods": "gradcam"},
                                   files={"file": ("s.jpg", fixture_bytes("tumor", "glioma"), "image/jpeg")})
            assert accepted.status_code == 202, accepted.text
            job_id = accepted.json()["job_id"]
            until(lambda: client.get(f"/explain/{job_id}").json()["status"] == "started", 20)

            # Alive and busy: three rounds of the API's check leave the job with its worker.
            time.sleep(3.5)
            assert client.get(f"/explain/{job_id}").json()["status"] == "started"
            assert client.get("/readyz").status_code == 200

            worker.kill()  # SIGKILL: no goodbye, the heartbeat just stops
            killed = time.monotonic()
            not_ready = until(lambda: client.get("/readyz").status_code == 503, 5)
            body = client.get("/readyz").json()
            assert body["error"]["code"] == "not_ready" and "no explain worker is alive" in body["error"]["message"]
            until(lambda: client.get(f"/explain/{job_id}").json()["status"] == "queued", 5 - not_ready)
            requeued = time.monotonic() - killed
            assert requeued < 5, requeued
            job = Job.fetch(job_id, connection=r)
            assert job.retries_left == 1  # one of the two retries spent (DISEASEID_EXPLAIN_RETRIES=2)
            assert job.meta["error_kind"] == "abandoned" and "stopped before finishing" in job.meta["error"]
            queue = Queue("explain", connection=r)
            assert job_id in queue.job_ids and StartedJobRegistry(queue=queue).count == 0
            assert re.search(r'failures_total\{kind="abandoned"\} 1\.0', client.get("/metrics").text)
    finally:
        stack.close()
