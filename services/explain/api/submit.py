"""Putting an explain request on the queue, once: identical requests within the TTL share one job.

The dedup entry and the job are written in one Redis transaction watched on the dedup key, so two identical
requests racing each other cannot both enqueue, and a crash between the two writes cannot leave an entry
that points nowhere.
"""
from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass

from redis.exceptions import WatchError
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from services.explain.redis_store import ExplainStore
from services.explain.settings import ExplainSettings

# By name: the API never imports the worker package (it would load torch and the explainers); a test checks
# that the name resolves to the worker's job.
JOB_FUNCTION = "services.explain.worker.explain.explain_job"
# A job in one of these states cannot produce a result any more; an identical request gets a new job.
DEAD_STATES = {JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


@dataclass(frozen=True)
class ExplainRequest:
    # 224 x 224 x 3 uint8, decoded and validated by the API, then sealed (services.explain.sealing, PAYLOAD)
    pixels: bytes
    image_sha256: str  # of the uploaded file, as sent
    task: str
    role: str
    methods: tuple[str, ...]
    target: int | None
    # Who asked (services.common.auth.tenant_id; "" without keys): jobs are shared within a tenant only.
    tenant: str = ""

    @property
    def key(self) -> str:
        """Two requests are identical when tenant, file bytes, task, model, methods and target all match."""
        target = "" if self.target is None else str(self.target)
        raw = (f"{self.tenant}|{self.image_sha256}|{self.task}|{self.role}|{','.join(sorted(self.methods))}"
               f"|{target}")
        return hashlib.sha256(raw.encode()).hexdigest()


def _live_job(queue: Queue, job_id: bytes | None) -> Job | None:
    if job_id is None:
        return None
    try:
        job = Job.fetch(job_id.decode(), connection=queue.connection)
    except NoSuchJobError:
        return None
    return None if job.get_status(refresh=False) in DEAD_STATES else job


def submit(queue: Queue, settings: ExplainSettings, request: ExplainRequest) -> tuple[Job, bool]:
    """Enqueue ``request`` unless an identical one is queued, running or done; returns (job, deduplicated)."""
    dedup_key = ExplainStore.dedup_key(request.key)
    ttl = settings.ttl_s
    with queue.connection.pipeline() as pipe:
        while True:
            try:
                pipe.watch(dedup_key)
                existing = _live_job(queue, pipe.get(dedup_key))
                if existing is not None:
                    pipe.unwatch()
                    return existing, True
                pipe.multi()
                job_id = uuid.uuid4().hex
                pipe.set(dedup_key, job_id, ex=ttl)
                job = queue.enqueue(
                    JOB_FUNCTION,
                    None,  # the image: in the job's hash (ExplainStore.PAYLOAD_FIELD), written below
                    request.task,
                    request.role,
                    list(request.methods),
                    request.target,
                    job_id=job_id,
                    job_timeout=settings.job_timeout_s,
                    # How long its outcome stays; a queued job waits as long as it takes.
                    result_ttl=ttl,
                    failure_ttl=ttl,
                    retry=Retry(max=settings.retries) if settings.retries > 0 else None,
                    description=f"explain {request.task}/{request.role} {','.join(request.methods)}",
                    meta={"task": request.task, "model": request.role, "methods": list(request.methods),
                          "target": request.target, "image_sha256": request.image_sha256, "tenant": request.tenant,
                          "submitted_at": time.time()},
                    pipeline=pipe,
                )
                # In the same transaction: no worker sees the job without its image.
                pipe.hset(job.key, ExplainStore.PAYLOAD_FIELD, request.pixels)
                pipe.execute()
                return job, False
            except WatchError:
                continue
