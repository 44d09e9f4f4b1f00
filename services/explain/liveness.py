"""Which workers are alive: registered for the queue and heard from recently.

A worker beats every ``idle_poll_s`` while it waits for jobs and every ``heartbeat_interval_s`` while it
runs one (services.explain.worker). One whose last beat is older than two beats and a second is dead or
hung; :func:`fresh_within` gives that bound, which /readyz, the metrics and the container health check all
use. RQ's own registration lives far longer (``worker_ttl_s``): a SIGKILLed worker stays registered until
its key expires, so registration alone would count a dead worker for up to a minute. The explain API's
/readyz also asks whether the worker's connections to Redis are still open, which tells a dead worker within
a second (services.explain.recovery).
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from rq import Queue, Worker


def fresh_within(heartbeat_interval_s: float, idle_poll_s: float, worker_ttl_s: float) -> float:
    """Seconds since its last heartbeat within which a worker counts as alive."""
    return min(float(worker_ttl_s), 2 * max(heartbeat_interval_s, idle_poll_s) + 1)


def alive_workers(queue: Queue, fresh_s: float, gone: Callable[[list[str]], set[str]] | None = None
                  ) -> list[Worker]:
    """Workers of ``queue`` whose last heartbeat is at most ``fresh_s`` seconds old, less those that ``gone``
    (given their names) says are dead: the explain API's test of their Redis connections, which close the
    moment a worker dies, long before its heartbeat goes stale (services.explain.recovery)."""
    now = datetime.now(UTC)
    alive = []
    workers = Worker.all(queue=queue)
    dead = gone([w.name for w in workers]) if gone is not None and workers else set()
    for worker in workers:
        if worker.name in dead:
            continue
        beat = worker.last_heartbeat
        if beat is None:
            continue
        if beat.tzinfo is None:
            beat = beat.replace(tzinfo=UTC)
        if (now - beat).total_seconds() <= fresh_s:
            alive.append(worker)
    return alive


def worker_alive_on(hostname: str) -> tuple[bool, str]:
    """The explain worker container's health check (``python -m services.common.healthcheck --explain-worker``):
    has a worker registered from ``hostname`` (a container's hostname is its own) beaten lately? The same test
    the explain API's ``/readyz`` applies to all workers, with the same settings."""
    from redis import Redis

    from services.explain.settings import ExplainSettings

    settings = ExplainSettings()
    with Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2) as connection:
        queue = Queue(settings.queue, connection=connection)
        mine = [w for w in alive_workers(queue, settings.heartbeat_fresh_s) if w.hostname == hostname]
    return bool(mine), f"{len(mine)} live explain worker(s) on {hostname}"
