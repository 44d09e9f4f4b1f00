"""Which workers are alive: registered for the queue and heard from within ``worker_ttl_s``."""
from __future__ import annotations

from datetime import UTC, datetime

from rq import Queue, Worker


def alive_workers(queue: Queue, worker_ttl_s: float) -> list[Worker]:
    # A SIGKILLed worker stays registered until its key expires; its heartbeat age gives it away sooner.
    now = datetime.now(UTC)
    alive = []
    for worker in Worker.all(queue=queue):
        beat = worker.last_heartbeat
        if beat is None:
            continue
        if beat.tzinfo is None:
            beat = beat.replace(tzinfo=UTC)
        if (now - beat).total_seconds() <= worker_ttl_s:
            alive.append(worker)
    return alive
