"""The explain worker's heartbeat thread and its duration statistics, with a real worker on a real Redis.

One heartbeat thread serves every job of a worker (a thread per job cost ~0.5 ms before each job); it beats only
while a job runs, never for a finished job, and ends with the worker. A job's durations reach the histograms
after its outcome is stored, so the client waiting for the result does not wait for the statistics.
"""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from rq import get_current_job
from rq.job import Job, JobStatus

from services.explain.redis_store import ExplainStore
from services.explain.settings import ExplainSettings
from services.explain.worker import durations

# When durations were recorded: (job id, its status then, its result then).
RECORDED: list[tuple] = []


def job_with_durations(seconds: float, fail: bool = False) -> dict:
    """Stands in for the model's job (which needs the weights): hands its stage durations over as explain_job does."""
    time.sleep(seconds)
    durations.hand_over(get_current_job().id, {"total": seconds, "explain": seconds / 2})
    if fail:
        raise ValueError("failed after its results")
    return {"slept": seconds}


def _worker(queue, **settings):
    from services.explain.worker.main import build_worker

    return build_worker(queue.connection, ExplainSettings(**settings))


def test_one_heartbeat_thread_beats_every_job_only_while_it_runs(queue, monkeypatch):
    from services.explain.worker.main import ExplainWorker

    beats = []  # (job id, wall time, thread)
    original = ExplainWorker.maintain_heartbeats

    def recording(self, job, execution):
        beats.append((job.id, time.time(), threading.current_thread()))
        return original(self, job, execution)

    monkeypatch.setattr(ExplainWorker, "maintain_heartbeats", recording)
    jobs = [queue.enqueue("time.sleep", 0.5, job_timeout=60) for _ in range(2)]
    worker = _worker(queue, heartbeat_interval_s=0.1, abandoned_grace_s=1.0)
    worker.work(burst=True)

    threads = {thread for _, _, thread in beats}
    assert len(threads) == 1 and threading.main_thread() not in threads  # one thread for both jobs
    assert not threads.pop().is_alive()  # ended with the worker
    for job in jobs:
        job = Job.fetch(job.id, connection=queue.connection)
        assert job.get_status() == JobStatus.FINISHED
        times = [t for job_id, t, _ in beats if job_id == job.id]
        assert 2 <= len(times) <= 5  # every 0.1 s of a 0.5 s job
        start, end = job.started_at.timestamp(), job.ended_at.timestamp()
        # Never before the job started nor once it is over (RQ stamps ended_at a few ms before storing the outcome).
        assert all(start < t < end + 0.05 for t in times), (start, times, end)
        assert times[0] - start >= 0.09  # the first after one interval
    # No beat put a finished job back among the running ones (it would later be found "abandoned").
    time.sleep(0.3)
    assert queue.started_job_registry.get_job_ids() == []


def test_a_job_past_its_timeout_gets_no_more_beats():
    from services.explain.worker.main import JobHeartbeat

    sent = []
    heartbeat = JobHeartbeat(0.05, lambda job: 0.3, lambda job, execution: sent.append(time.monotonic()))
    started = time.monotonic()
    heartbeat.begin(object(), object())
    time.sleep(0.8)
    heartbeat.end()
    offsets = [t - started for t in sent]
    assert offsets and all(0.045 <= t <= 0.32 for t in offsets)  # none past the 0.3 s limit
    assert len(offsets) <= 6
    sent.clear()
    heartbeat.begin(object(), object())  # the next job is beaten for again
    time.sleep(0.2)
    heartbeat.end()
    heartbeat.close()
    assert 1 <= len(sent) <= 4


def test_a_failing_beat_does_not_stop_the_next_jobs_beats():
    from services.explain.worker.main import JobHeartbeat

    sent = []

    def beat(job, execution):
        sent.append(job.id)
        if job.id == "first":
            raise RuntimeError("not a Redis error")

    heartbeat = JobHeartbeat(0.05, lambda job: 60.0, beat)
    for job_id in ("first", "second"):
        heartbeat.begin(SimpleNamespace(id=job_id), None)
        time.sleep(0.2)
        heartbeat.end()
    count = len(sent)
    time.sleep(0.15)
    heartbeat.close()
    assert "first" in sent and "second" in sent
    assert len(sent) == count  # nothing after end()


def test_durations_are_recorded_after_the_outcome_and_only_for_finished_jobs(queue, monkeypatch):
    name = f"{__name__}.job_with_durations"
    ok = queue.enqueue(name, 0.05, job_timeout=60)
    bad = queue.enqueue(name, 0.05, fail=True, job_timeout=60)
    original = ExplainStore.record_durations

    def recording(self, seconds_by_stage):
        # Only the job that finished has durations recorded, and only once its result can be read.
        job = Job.fetch(ok.id, connection=self.redis)
        RECORDED.append((ok.id, job.get_status(), job.return_value()))
        return original(self, seconds_by_stage)

    monkeypatch.setattr(ExplainStore, "record_durations", recording)
    RECORDED.clear()
    _worker(queue, heartbeat_interval_s=0.1).work(burst=True)

    assert RECORDED == [(ok.id, JobStatus.FINISHED, {"slept": 0.05})]
    assert Job.fetch(bad.id, connection=queue.connection).get_status() == JobStatus.FAILED
    stats = ExplainStore(queue.connection, 60).durations()
    assert stats["total"] == pytest.approx({"0.05": 1.0, "0.1": 1.0, "0.25": 1.0, "0.5": 1.0, "1.0": 1.0,
                                            "2.5": 1.0, "5.0": 1.0, "10.0": 1.0, "30.0": 1.0, "60.0": 1.0,
                                            "+Inf": 1.0, "sum": 0.05})
    assert stats["explain"]["sum"] == pytest.approx(0.025)
    assert durations.take(ok.id) is None and durations.take(bad.id) is None  # nothing left behind
