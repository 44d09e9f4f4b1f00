"""Which workers are alive: registered for the queue and heard from recently.

A worker beats every ``idle_poll_s`` while it waits for jobs and every ``heartbeat_interval_s`` while it
runs one (services.explain.worker). One whose last beat is older than two beats and a second is dead or
hung; :func:`fresh_within` gives that bound, which /readyz, the metrics and the container health check all
use. RQ's own registration lives far longer (``worker_ttl_s``): a SIGKILLed worker stays registered until
its key expires, so registration alone would count a dead worker for up to a minute.
"""
from __future__ import annotations

from datetime import UTC, datetime

from rq import Queue, Worker


def fresh_within(heartbeat_interval_s: float, idle_poll_s: float, worker_ttl_s: float) -> float:
    """Seconds since its last heartbeat within which a worker counts as alive."""
    return min(float(worker_ttl_s), 2 * max(heartbeat_interval_s, idle_poll_s) + 1)


def alive_workers(queue: Queue, fresh_s: float) -> list[Worker]:
    """Workers of ``queue`` whose last heartbeat is at most ``fresh_s`` seconds old."""
    now = datetime.now(UTC)
    alive = []
    for worker in Worker.all(queue=queue):
        beat = worker.last_heartbeat
        if beat is None:
            continue
        if beat.tzinfo is None:
            beat = beat.replace(tzinfo=UTC)
        if (now - beat).total_seconds() <= fresh_s:
            alive.append(worker)
    return alive
