"""The explain worker's round trips around a job, counted on a real Redis.

A client waiting for an explanation waits for every round trip between the job reaching the queue and its
function starting, and between the function's end and the outcome's transaction (the XADD its long poll wakes
on). RQ beats the worker once more right after taking a job and beats the job once more after it ran (for
callbacks, which ours do not have); the worker skips both (services.explain.worker.main), and the writes that
remain carry the same facts.
"""
from __future__ import annotations

import re
import threading

from redis.connection import AbstractConnection
from rq.job import Job, JobStatus

WRITES: list[bytes] = []  # what the test's thread sent to Redis: one entry per write, i.e. per round trip
_COMMAND = re.compile(rb"\*(\d+)\r\n\$\d+\r\n([A-Z]+)\r\n(?:\$\d+\r\n([^\r]*))?")


def marked_job() -> str:
    WRITES.append(b"<job>")
    return "done"


def commands(write: bytes) -> list[tuple[str, str]]:
    """(command, first key) of each command in one write, in order."""
    return [(name.decode(), key.decode() if int(n) > 1 else "") for n, name, key in _COMMAND.findall(write)]


def test_no_round_trip_between_taking_a_job_and_its_start_or_its_end_and_its_outcome_but_rqs_own(queue, monkeypatch):
    from services.explain.settings import ExplainSettings
    from services.explain.worker.main import build_worker

    main = threading.current_thread()  # the worker's loop; its heartbeat thread writes on its own
    original = AbstractConnection.send_packed_command

    def recording(self, command, check_health=True):
        if threading.current_thread() is main:
            WRITES.append(command if isinstance(command, bytes) else b"".join(command))
        return original(self, command, check_health)

    job = queue.enqueue(f"{__name__}.marked_job", job_timeout=60)
    worker = build_worker(queue.connection, ExplainSettings(heartbeat_interval_s=5))
    monkeypatch.setattr(AbstractConnection, "send_packed_command", recording)
    WRITES.clear()
    worker.work(burst=True)
    monkeypatch.undo()

    started = WRITES.index(b"<job>")
    taken = max(i for i, w in enumerate(WRITES[:started]) if commands(w)[:1] == [("LMOVE", "rq:queue:explain")])
    before = [commands(w) for w in WRITES[taken + 1:started]]
    # The job's fetch, RQ's execution record, and its one transaction that beats the worker and the job together.
    assert [c[0] for c in before] == [("HGETALL", job.key), ("MULTI", ""), ("MULTI", "")], before
    assert ("EXPIRE", worker.key) in before[2] and ("HSET", job.key) in before[2]

    outcome = next(i for i in range(started, len(WRITES)) if b"XADD" in WRITES[i])
    after = [commands(w) for w in WRITES[started + 1:outcome]]
    # Only RQ's look for dependent jobs (WATCH, then SMEMBERS) before the outcome's transaction.
    assert [c[0][0] for c in after] == ["WATCH", "SMEMBERS"], after
    assert commands(WRITES[outcome])[0] == ("MULTI", "")

    done = Job.fetch(job.id, connection=queue.connection)
    assert done.get_status() == JobStatus.FINISHED and done.return_value() == "done"
    # The beat RQ would have sent on its own is saved with the outcome: at the job's end.
    assert done.last_heartbeat == done.ended_at and done.ended_at >= done.started_at
