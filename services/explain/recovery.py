"""A worker that dies is noticed within a second, and its job goes back on the queue at once.

Heartbeats alone answer slowly: a worker beats every few seconds, so "dead" can only mean "silent for two
beats" (``services.explain.liveness``), and RQ hands a dead worker's job on only when the job's registry entry
expires (a beat plus ``abandoned_grace_s``) and some worker's maintenance next runs: half a minute with the
defaults. A faster sign is the worker's connection to Redis: every worker names its connections
(``ExplainStore.worker_client_name``), and when its process dies, however it dies, the kernel closes them and
Redis drops them from ``CLIENT LIST`` at once. So

* ``/readyz`` counts a worker as alive only while one of its connections is open (besides a fresh heartbeat,
  which still catches a worker that hangs); a worker says in its registration that it names its connections
  (``CONNECTION_NAME_FIELD``), and one that does not is judged by its heartbeat alone;
* the explain API runs :func:`requeue_orphans` every ``orphan_check_interval_s`` (1 s): a started job whose
  worker has no connection left is handed back as RQ does with an abandoned job (retried while it has
  retries left, else failed), with the same reason recorded.

Right after Redis itself restarted, a live worker may not have reconnected yet (a busy one does so at its next
heartbeat): for ``settle_s`` after a Redis start the connection test is not trusted, and the heartbeat
timings apply as before. A lock per job keeps two API replicas from handing one job back twice.
"""
from __future__ import annotations

import logging

from redis import Redis
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from services.explain.redis_store import ExplainStore

log = logging.getLogger("services.explain.recovery")

ABANDONED_MESSAGE = "the worker running this job stopped before finishing it (killed or crashed)"
# A field of RQ's worker registration that our workers add: the name their connections carry.
CONNECTION_NAME_FIELD = "connection_name"


def connected_workers(redis: Redis) -> set[str]:
    """Names of the workers that hold at least one open connection to this Redis. Our workers name every
    connection ``ExplainStore.worker_client_name``; RQ itself renames one of them to the bare worker name
    (to learn its address), which counts as well."""
    prefix = ExplainStore.WORKER_CLIENT_PREFIX
    names = {client.get("name") or "" for client in redis.client_list()}
    return {name.removeprefix(prefix) for name in names if name}


def gone_workers(redis: Redis, names: list[str] | set[str], settle_s: float) -> set[str]:
    """Those of ``names`` that are certainly dead: registered as naming their connections, and none of them is
    open. Empty while the connection test is not trusted (Redis just restarted); a worker that does not name
    its connections (another version, RQ's own CLI) is never in it."""
    names = [n for n in names if n]
    if not names or not connections_trusted(redis, settle_s):
        return set()
    with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hget(Worker.redis_worker_namespace_prefix + name, CONNECTION_NAME_FIELD)
        declared = pipe.execute()
    candidates = {name for name, field in zip(names, declared, strict=True) if field}
    return candidates - connected_workers(redis) if candidates else set()


def connections_trusted(redis: Redis, settle_s: float) -> bool:
    """Whether Redis has run long enough that every live worker has reconnected to it."""
    return float(redis.info("server").get("uptime_in_seconds", 0)) >= settle_s


def record_failure(job: Job, kind: str, message: str, store: ExplainStore | None) -> None:
    """What a client and the metrics see of a failure: the reason, its kind, one count."""
    job.meta["error"] = message
    job.meta["error_kind"] = kind
    job.save_meta()
    if store is not None:
        store.count(f"failures_{kind}")


def requeue_orphans(queue: Queue, store: ExplainStore, settle_s: float) -> list[str]:
    """Hand back every started job whose worker has no connection to Redis left; returns their ids."""
    redis = queue.connection
    registry = StartedJobRegistry(queue=queue)
    entries = registry.get_job_and_execution_ids(cleanup=False)
    if not entries:
        return []
    # Two small fields per running job, not the job (whose sealed payload is 150 kB), once a second.
    with redis.pipeline(transaction=False) as pipe:
        for job_id, _ in entries:
            pipe.hmget(Job.key_for(job_id), "status", "worker_name")
        fields = pipe.execute()
    started = [(job_id, execution_id, worker.decode())
               for (job_id, execution_id), (status, worker) in zip(entries, fields, strict=True)
               if status is not None and status.decode() == JobStatus.STARTED.value and worker]
    gone = gone_workers(redis, {worker for _, _, worker in started}, settle_s)
    orphans = []
    for job_id, execution_id, worker in started:
        if worker not in gone:
            continue
        if not redis.set(store.requeue_lock_key(job_id, execution_id), "1", nx=True, ex=60):
            continue  # another replica is on it
        # Due now: RQ's own cleanup below then treats it as any abandoned job.
        redis.zadd(registry.key, {f"{job_id}:{execution_id}": 0}, xx=True)
        orphans.append(job_id)
    if orphans:
        def abandoned(job, *exc_info) -> bool:
            record_failure(job, "abandoned", ABANDONED_MESSAGE, store)
            return True

        registry.cleanup(timestamp=0, exception_handlers=[abandoned])
        log.warning("worker gone: job(s) %s handed back (retried while retries are left)", ", ".join(orphans))
    return orphans
