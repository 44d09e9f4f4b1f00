"""The explain worker: ``python -m services.explain.worker``.

A thin subclass of RQ's ``SimpleWorker``: jobs run in the worker process itself, so the models loaded at
start (on CUDA when present) serve every job without a fork, and a GPU context is never inherited across
``fork()``. What the subclass adds is recovery:

* While a job runs, a heartbeat thread (one for the worker's life, :class:`JobHeartbeat`: starting a thread per
  job cost ~0.5 ms before every job and joining it as much after) keeps the job's entry in RQ's
  StartedJobRegistry alive for ``heartbeat_interval_s + abandoned_grace_s``. A worker that is SIGKILLed stops
  beating; when the entry expires, the next registry cleanup (every idle worker runs one each
  ``maintenance_interval_s``) finds the job abandoned and, while it has retries left, puts it back on the queue
  for another worker.
* Faster than any of that: every connection of the worker carries its name (``connect``), so when the process
  dies Redis sees them close, and the explain API hands the job back within a second
  (services.explain.recovery).
* Failures are sorted: bad input (ValueError, LookupError, TypeError) and timeouts fail at once; anything
  else (a lost Redis connection, CUDA out of memory, a killed worker) is retried up to ``retries`` times.
  Either way only the job fails: the exception is caught and the worker takes the next job.
* Redis going away: RQ's loop retries the connection; if Redis came back empty (no persistence), the next
  heartbeat notices the lost registration and registers again. Should ``work()`` end on a connection
  error anyway, ``main`` reconnects with the same loaded models and carries on.
* Two round trips fewer on a waiting client's path: RQ beats the worker right after taking a job, just before
  the transaction that starts it beats the worker again, and beats the job once more after it ran, for callbacks
  ours do not have (the outcome's transaction saves that beat's time). Both are skipped
  (tests/services/test_explain_round_trips.py; 0.1-0.5 ms a job, `python -m dev.explain_round_trips_ab`).
"""
from __future__ import annotations

import argparse
import logging
import math
import threading
import time
import uuid

import redis
from redis import Redis
from rq import Queue, SimpleWorker, worker_registration
from rq.exceptions import AbandonedJobError, StopRequested
from rq.timeouts import JobTimeoutException
from rq.utils import now

from services.common.logs import setup_logging
from services.common.process import WORKER_NICE, apply_process_settings
from services.explain.recovery import ABANDONED_MESSAGE, CONNECTION_NAME_FIELD, record_failure
from services.explain.redis_store import ExplainStore
from services.explain.settings import ExplainSettings, get_settings
from services.explain.worker import durations
from services.explain.worker.models import model_pool, parse_preload

log = logging.getLogger("services.explain.worker")

# Failures that would repeat on retry: fail the job at once with the message.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (ValueError, LookupError, TypeError, JobTimeoutException)


def failure_message(exc_type: type[BaseException], exc_value: BaseException | None,
                    timeout: int | None) -> str:
    """A one-line, user-facing reason (the traceback stays in RQ's failure record and the worker log)."""
    if issubclass(exc_type, AbandonedJobError):
        return ABANDONED_MESSAGE
    if issubclass(exc_type, JobTimeoutException):
        return f"the explanation took longer than the {timeout} s job timeout"
    text = str(exc_value) if exc_value is not None else ""
    return f"{exc_type.__name__}: {text}" if text else exc_type.__name__


class JobHeartbeat:
    """Beats for the job the worker is running, every ``interval_s`` from its start, from one thread that lives as
    long as the worker (started with its first job, ended by :meth:`close`).

    ``beat(job, execution)`` sends one beat (``ExplainWorker.maintain_heartbeats``). A job past ``limit_s(job)``
    (hung past its timeout, say) gets no more beats, so that it stops looking alive. Beats are sent holding the
    lock that :meth:`end` takes: once ``end()`` returns, the finished job gets no beat (which would put it back
    in the StartedJobRegistry).
    """

    def __init__(self, interval_s: float, limit_s, beat):
        self.interval_s = interval_s
        self.limit_s = limit_s
        self.beat = beat
        self._cond = threading.Condition()
        self._current: list | None = None  # [job, execution, started, next beat] (monotonic seconds)
        self._closed = False
        self._thread: threading.Thread | None = None

    def begin(self, job, execution) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
                self._thread.start()
            started = time.monotonic()
            self._current = [job, execution, started, started + self.interval_s]
            self._cond.notify()

    def end(self) -> None:
        with self._cond:
            self._current = None
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._current = None
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                current = self._current
                if current is None:
                    self._cond.wait()
                    continue
                job, execution, started, due = current
                now = time.monotonic()
                if now < due:
                    self._cond.wait(due - now)  # or until the job ends
                    continue
                if now - started > self.limit_s(job):
                    self._current = None  # no more beats for this job; the next one's begin() wakes us
                    continue
                try:
                    self.beat(job, execution)
                except redis.RedisError as exc:
                    log.warning("heartbeat for job %s failed: %s", job.id, exc)
                except Exception:  # noqa: BLE001 - one bad beat must not end the beats of every later job
                    log.exception("heartbeat for job %s failed", job.id)
                current[3] = time.monotonic() + self.interval_s  # as before: a late beat does not bunch the next


class ExplainWorker(SimpleWorker):
    def __init__(self, *args, store: ExplainStore | None = None, heartbeat_interval_s: float = 10.0,
                 abandoned_grace_s: float = 20.0, idle_poll_s: int = 5, **kwargs):
        # Before the base class's __init__, which already reads dequeue_timeout (below).
        self.heartbeat_interval_s = heartbeat_interval_s
        self.abandoned_grace_s = abandoned_grace_s
        self.idle_poll_s = idle_poll_s
        self._job_dequeued = False
        super().__init__(*args, **kwargs)
        self.store = store
        self.job_heartbeat = JobHeartbeat(heartbeat_interval_s, self._beat_limit_s, self.maintain_heartbeats)
        # Set by SIGINT/SIGTERM (through RQ's warm-shutdown hook): main() must not start a new worker then.
        self.stop_signalled = False
        self.push_exc_handler(self._on_failure)

    def serialize(self) -> dict:
        # In the worker's registration: its connections carry this name (services.explain.recovery), so a
        # missing connection means a dead worker (a worker that does not say so is judged by heartbeat alone).
        return {**super().serialize(), CONNECTION_NAME_FIELD: ExplainStore.worker_client_name(self.name)}

    def handle_warm_shutdown_request(self) -> None:
        self.stop_signalled = True
        super().handle_warm_shutdown_request()

    @property
    def dequeue_timeout(self) -> int:
        # The base class blocks for worker_ttl - 15 s; maintenance (abandoned-job recovery) only runs
        # between blocking pops, so an idle worker must wake often enough to run it.
        return self.idle_poll_s

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        self._job_dequeued = False  # a flag left by a dequeue that raised must not skip the next loop's beat
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def reorder_queues(self, reference_queue) -> None:
        # Called by RQ's dequeue_job_and_maintain_ttl only when it took a job, just before its last heartbeat.
        super().reorder_queues(reference_queue)
        self._job_dequeued = True

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        if self._job_dequeued:
            # RQ beats once more right after taking a job; prepare_job_execution beats in its own pipeline a
            # moment later, so this round trip only delays the job's start.
            self._job_dequeued = False
            return
        # One round trip instead of four (RQ sends its three commands one by one): a heartbeat falls between
        # taking a job off the queue and starting it.
        with self.connection.pipeline(transaction=False) as pipe:
            super().heartbeat(timeout, pipe)
            pipe.hexists(self.key, "birth")
            registered = pipe.execute()[-1]
        if not registered:
            # Redis restarted without our registration (no persistence): without registering again
            # this worker would keep working but /readyz and `rq info` would never see it.
            self._register_again()

    def _register_again(self) -> None:
        log.warning("worker %s: registration lost (Redis restarted?); registering again", self.name)
        with self.connection.pipeline() as pipe:
            pipe.hset(self.key, mapping=self.serialize())
            worker_registration.register(self, pipe)
            pipe.expire(self.key, self.worker_ttl + 60)
            pipe.execute()

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        interval = self.heartbeat_interval_s
        if job.timeout and job.timeout > 0:
            interval = min(interval, max(job.timeout - working_time, 0.0))
        return max(1, math.ceil(interval + self.abandoned_grace_s))

    def perform_job(self, job, queue, execution) -> bool:
        self.job_heartbeat.begin(job, execution)
        try:
            finished = super().perform_job(job, queue, execution)
        finally:
            self.job_heartbeat.end()
        # Only now, with the job's outcome stored (a waiting client may have it already): the statistics.
        seconds_by_stage = durations.take(job.id)
        if finished and seconds_by_stage is not None and self.store is not None:
            try:
                self.store.record_durations(seconds_by_stage)
            except redis.RedisError as exc:  # the job is done; only /metrics misses it
                log.warning("could not record the durations of job %s: %s", job.id, exc)
        return finished

    def handle_execution_ended(self, job, queue, heartbeat_ttl: int) -> None:
        # RQ stamps the end and beats once more, a round trip of its own, so that a job's success or failure
        # callback runs looking alive. Ours have none, and the outcome's transaction that follows saves the job
        # with this beat's time: the client waiting for the result is spared the round trip.
        if job.success_callback or job.failure_callback:
            super().handle_execution_ended(job, queue, heartbeat_ttl)
            return
        job.ended_at = now()
        job.last_heartbeat = job.ended_at

    def _beat_limit_s(self, job) -> float:
        # A job stuck past its timeout (hung in native code, say) must stop looking alive.
        return (job.timeout + self.abandoned_grace_s) if job.timeout and job.timeout > 0 else math.inf

    def teardown(self) -> None:
        self.job_heartbeat.close()
        super().teardown()

    def _on_failure(self, job, exc_type, exc_value, tb) -> bool:
        permanent = issubclass(exc_type, PERMANENT_ERRORS)
        if permanent:
            job.retries_left = 0
        if issubclass(exc_type, AbandonedJobError):
            kind = "abandoned"
        else:
            kind = "permanent" if permanent else "transient"
        try:
            record_failure(job, kind, failure_message(exc_type, exc_value, job.timeout), self.store)
        except redis.RedisError as exc:
            log.warning("could not record the failure of job %s: %s", job.id, exc)
        return True


def connect(settings: ExplainSettings, name: str) -> Redis:
    """A connection pool whose every connection carries the worker's name (services.explain.recovery): when
    this process dies, Redis sees them close and the API knows within a second."""
    return Redis.from_url(settings.redis_url, health_check_interval=10,
                          socket_connect_timeout=settings.redis_connect_timeout_s,
                          client_name=ExplainStore.worker_client_name(name))


def build_worker(connection: Redis, settings: ExplainSettings, name: str | None = None) -> ExplainWorker:
    worker = ExplainWorker(
        [Queue(settings.queue, connection=connection)],
        name=name,
        connection=connection,
        store=ExplainStore(connection, settings.ttl_s),
        heartbeat_interval_s=settings.heartbeat_interval_s,
        abandoned_grace_s=settings.abandoned_grace_s,
        idle_poll_s=settings.idle_poll_s,
        default_result_ttl=settings.ttl_s,
        worker_ttl=settings.worker_ttl_s,
        maintenance_interval=settings.maintenance_interval_s,
        job_monitoring_interval=max(1, math.ceil(settings.heartbeat_interval_s)),
    )
    # Reconnecting quickly matters more than sparing a restarted Redis a few pings.
    worker.max_connection_wait_time = 5
    return worker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.explain.worker",
                                     description="Run one explain worker (RQ) on REDIS_URL.")
    parser.add_argument("--burst", action="store_true", help="quit when the queue is empty")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)

    settings = get_settings()
    from services.explain.sealing import process_sealer

    process_sealer()  # a bad or missing key stops the worker here, not in its first job
    # Below the inference service's priority (services.common.process), before any thread pool exists.
    apply_process_settings(settings, default_nice=WORKER_NICE)
    from services.explain.worker.explain import warm_up

    loaded = model_pool().preload(parse_preload(settings.preload), warm_up=warm_up if settings.warmup else None)
    log.info("preloaded %d model(s)%s: %s", len(loaded), " and warmed them up" if settings.warmup else "",
             ", ".join(p.name for p in loaded))

    while True:
        name = uuid.uuid4().hex  # RQ's own default, chosen here so that the connections can carry it
        connection = connect(settings, name)
        worker = build_worker(connection, settings, name)
        try:
            worker.work(burst=args.burst, logging_level=args.log_level)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("lost Redis at %s (%s); reconnecting", settings.redis_url, exc)
        finally:
            try:
                worker.unsubscribe()
            except Exception:  # noqa: BLE001 - best effort on a connection that is already gone
                pass
            connection.close()
        # work() also returns when Redis went away; only a signal (or burst mode) ends the process.
        if worker.stop_signalled or args.burst:
            return 0
        try:
            time.sleep(1.0)
        except StopRequested:  # SIGTERM between two connections: the last worker's handler is still set
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
