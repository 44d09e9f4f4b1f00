"""Everything the explain service keeps in Redis besides RQ's own keys: results, dedup entries, statistics.

Images and maps live only in Redis keys with a TTL, sealed (services.explain.sealing): Redis persists them to
disk, where they must not be readable. The key names are here and nowhere else.
Statistics are kept in Redis rather than in process memory because the worker measures and the API reports:
``/metrics`` reads them back as Prometheus families.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

from redis import Redis

from services.explain.sealing import Sealer, SealError, result_context

PREFIX = "diseaseid:explain"
# Job-duration histogram buckets in seconds (CPU explain of one slice sits around 0.1-2 s).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, math.inf)


def bucket_label(le: float) -> str:
    return "+Inf" if math.isinf(le) else repr(le)


class ExplainStore:
    def __init__(self, redis: Redis, ttl_s: int, sealer: Sealer | None = None):
        """``sealer`` seals the result files (every service passes one; None stores them as they are, for
        tests of the statistics alone)."""
        self.redis = redis
        self.ttl_s = ttl_s
        self.sealer = sealer

    # -- results ---------------------------------------------------------------------------------------
    @staticmethod
    def result_key(job_id: str, name: str) -> str:
        return f"{PREFIX}:result:{job_id}:{name}"

    def put_results(self, job_id: str, files: Mapping[str, bytes]) -> None:
        with self.redis.pipeline(transaction=True) as pipe:
            for name, data in files.items():
                if self.sealer is not None:
                    data = self.sealer.seal(data, result_context(job_id, name))
                pipe.set(self.result_key(job_id, name), data, ex=self.ttl_s)
            pipe.execute()

    def get_result(self, job_id: str, name: str) -> bytes | None:
        """The file as the worker made it; None when it does not exist or does not open with our key."""
        data = self.redis.get(self.result_key(job_id, name))
        if data is None or self.sealer is None:
            return data
        try:
            return self.sealer.open(data, result_context(job_id, name))
        except SealError:
            return None

    # -- a queued job's image ----------------------------------------------------------------------------
    # A field of the job's own hash (RQ's writes of a job set only their own fields), so the sealed pixels live
    # exactly as long as the job, as they did among its arguments. Not an argument: RQ zlib-compresses a job's
    # arguments at level 6 on every save (enqueue, and again when the job finishes), 2.8 ms each for 150 kB of
    # sealed, incompressible bytes, and every fetch of the job inflated them again.
    PAYLOAD_FIELD = "diseaseid_payload"

    # -- dedup -----------------------------------------------------------------------------------------
    @staticmethod
    def dedup_key(request_key: str) -> str:
        """Names the job computing an identical request (see submit.py)."""
        return f"{PREFIX}:dedup:{request_key}"

    # -- worker liveness (services.explain.recovery) ---------------------------------------------------
    # Not a key: the name every connection of a worker carries (CLIENT SETNAME), so that Redis's client list
    # shows which workers are still there.
    WORKER_CLIENT_PREFIX = "diseaseid-worker:"

    @classmethod
    def worker_client_name(cls, worker_name: str) -> str:
        return f"{cls.WORKER_CLIENT_PREFIX}{worker_name}"

    @staticmethod
    def requeue_lock_key(job_id: str, execution_id: str) -> str:
        """Held by the API replica that hands one execution of a job back to the queue."""
        return f"{PREFIX}:requeue:{job_id}:{execution_id}"

    # -- statistics ------------------------------------------------------------------------------------
    STATS_DURATIONS = f"{PREFIX}:stats:durations"
    STATS_COUNTS = f"{PREFIX}:stats:counts"

    def record_durations(self, seconds_by_stage: Mapping[str, float]) -> None:
        """Add one observation per stage to its histogram (cumulative buckets, as Prometheus wants them)."""
        with self.redis.pipeline(transaction=False) as pipe:
            for stage, seconds in seconds_by_stage.items():
                for le in DURATION_BUCKETS:
                    if seconds <= le:
                        pipe.hincrby(self.STATS_DURATIONS, f"{stage}|{bucket_label(le)}", 1)
                pipe.hincrbyfloat(self.STATS_DURATIONS, f"{stage}|sum", seconds)
            pipe.execute()

    def count(self, what: str, n: int = 1) -> None:
        self.redis.hincrby(self.STATS_COUNTS, what, n)

    def durations(self) -> dict[str, dict[str, float]]:
        """``{stage: {"0.05": n, ..., "+Inf": n, "sum": s}}``."""
        out: dict[str, dict[str, float]] = {}
        for field, value in self.redis.hgetall(self.STATS_DURATIONS).items():
            stage, _, bucket = field.decode().partition("|")
            out.setdefault(stage, {})[bucket] = float(value)
        return out

    def counts(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.redis.hgetall(self.STATS_COUNTS).items()}
