"""An RQ job, as a client sees it: four states, a queue position, URLs for the results, one clear error."""
from __future__ import annotations

import math

from redis.asyncio import Redis as AsyncRedis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.results import Result

from diseaseid.answers import ExplainJobResult, ExplainResult
from services.common.errors import NotFound
from services.explain.api.schemas import ExplainRequestEcho, JobError, JobState, JobView

# RQ has more states than a client needs: a retried or deferred job is still waiting, a stopped one failed.
_STATES: dict[JobStatus, JobState] = {
    JobStatus.CREATED: "queued",
    JobStatus.QUEUED: "queued",
    JobStatus.DEFERRED: "queued",
    JobStatus.SCHEDULED: "queued",
    JobStatus.READY_TO_ENQUEUE: "queued",
    JobStatus.RATE_LIMITED: "queued",
    JobStatus.STARTED: "started",
    JobStatus.FINISHED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.STOPPED: "failed",
    JobStatus.CANCELED: "failed",
}


def job_state(job: Job) -> JobState:
    """The client-facing state from the job as last read (no Redis call)."""
    return _STATES.get(job.get_status(refresh=False), "queued")


def _not_found(job_id: str) -> NotFound:
    return NotFound(f"no explain job {job_id[:64]!r}: it never existed, its results expired, "
                    "or it belongs to another API key")


def fetch_job(queue: Queue, job_id: str, tenant: str = "") -> Job:
    """The job, or 404 when it never existed, its TTL ran out, or another tenant submitted it."""
    try:
        job = Job.fetch(job_id, connection=queue.connection)
    except NoSuchJobError:
        raise _not_found(job_id) from None
    if job.meta.get("tenant", "") != tenant:
        raise _not_found(job_id)
    return job


def check_owner(queue: Queue, job_id: str, tenant: str) -> None:
    """404 unless ``tenant`` submitted the job (reads only its meta, not its payload)."""
    job = Job(job_id, connection=queue.connection)
    try:
        meta = job.get_meta(refresh=True)
    except Exception:  # noqa: BLE001 - an unreadable meta is no proof of ownership
        meta = {}
    if not meta or meta.get("tenant", "") != tenant:
        raise _not_found(job_id)


async def wait_for_outcome(redis: AsyncRedis, job_id: str, seconds: float) -> None:
    """Return once the job has an outcome or after ``seconds``.

    RQ appends a finished or finally failed job's outcome to its results stream; XREAD blocks on that stream
    in Redis itself, so a waiting client costs one idle connection, not a polling loop or a thread.
    """
    if seconds > 0:
        await redis.xread({Result.get_key(job_id): "0-0"}, count=1, block=max(1, math.ceil(seconds * 1000)))


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def job_view(queue: Queue, job: Job, base_url: str, *, dicom: bool = False) -> JobView:
    """``dicom``: the job explains a DICOM upload (its result then links the DICOM objects)."""
    state = job_state(job)
    meta = job.meta
    view = JobView(
        job_id=job.id,
        status=state,
        request=ExplainRequestEcho(task=meta.get("task", ""), model=meta.get("model", ""),
                                   methods=meta.get("methods", []), target=meta.get("target"),
                                   image_sha256=meta.get("image_sha256", "")),
        enqueued_at=_iso(job.enqueued_at),
        started_at=_iso(job.started_at) if state != "queued" else None,
        ended_at=_iso(job.ended_at) if state in ("finished", "failed") else None,
    )
    if state == "queued":
        view.queue_position = queue.get_job_position(job.id)
    elif state == "finished":
        view.result = _result(job, base_url, dicom)
    elif state == "failed":
        view.error = JobError(code="job_failed", message=meta.get("error") or _last_line(job))
    return view


def _result(job: Job, base_url: str, dicom: bool = False) -> ExplainResult:
    value = _from_older_worker(job.return_value())
    return ExplainResult.with_urls(ExplainJobResult.model_validate(value), f"{base_url}/explain/{job.id}",
                                   dicom=dicom)


def _from_older_worker(value: dict) -> dict:
    """A result stored by a worker from before the one answer shape (it kept the prediction flat: ``ood`` a bool
    beside ``ood_score``, ``ood_reasons`` and ``ood_detector``), in today's shape. Such results live one TTL
    after an upgrade; a fresh result passes unchanged."""
    p = value.get("prediction")
    if not isinstance(p, dict) or not isinstance(p.get("ood"), bool):
        return value
    rest = {k: v for k, v in p.items() if k not in ("ood", "ood_score", "ood_reasons", "ood_detector")}
    ood = {"flag": p["ood"], "score": p.get("ood_score"), "reasons": p.get("ood_reasons") or [],
           "detector": p.get("ood_detector")}
    return {**value, "prediction": {**rest, "ood": ood}}


def _last_line(job: Job) -> str:
    """The exception line of RQ's failure record, for failures no handler described (none expected)."""
    result = job.latest_result()
    text = (result.exc_string if result is not None else None) or ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "the job failed"
