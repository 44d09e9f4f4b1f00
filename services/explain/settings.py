"""Explain-service settings: the shared service settings plus ``DISEASEID_EXPLAIN_*`` and ``REDIS_URL``.

The API and the worker read the same object, so the queue name, the TTL and the recovery timings agree.
The defaults suit production; tests shorten every timing so that a killed worker's job is recovered in
seconds, not minutes.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings

METHODS = ("gradcam", "lrp")


def _env(name: str, default: Any, *aliases: str, **kwargs: Any) -> Any:
    """A field read from ``DISEASEID_EXPLAIN_<NAME>`` (or the aliases); shared fields keep their names."""
    # No bare field name among the aliases: matching ignores case, and `QUEUE=...` or `RETRIES=...` left in an
    # unrelated environment must not reconfigure the service.
    return Field(default, validation_alias=AliasChoices(*aliases, f"DISEASEID_EXPLAIN_{name.upper()}"), **kwargs)


class ExplainSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DISEASEID_", extra="ignore", populate_by_name=True)

    # device: the inherited "auto", so a worker uses the GPU when it has one.

    redis_url: str = _env("redis_url", "redis://127.0.0.1:6379/0", "REDIS_URL")
    # A short connect timeout turns "Redis is down" into a fast 503 instead of a hung request.
    redis_connect_timeout_s: float = _env("redis_connect_timeout_s", 1.0, gt=0)
    queue: str = _env("queue", "explain")

    # How long a result (and its job, and the dedup entry) lives.
    ttl_s: int = _env("ttl_s", 3600, ge=1)
    job_timeout_s: int = _env("job_timeout_s", 120, ge=1)
    # Retries for transient failures (a worker killed mid-job, a lost Redis connection, CUDA OOM).
    retries: int = _env("retries", 2, ge=0)
    # The longest GET /explain/{id}?wait=... blocks for a result.
    max_wait_s: float = _env("max_wait_s", 30.0, ge=0)

    # Worker liveness and abandoned-job recovery (worker/main.py explains how they combine).
    heartbeat_interval_s: float = _env("heartbeat_interval_s", 5.0, gt=0)
    abandoned_grace_s: float = _env("abandoned_grace_s", 20.0, ge=0)
    maintenance_interval_s: float = _env("maintenance_interval_s", 15.0, gt=0)
    idle_poll_s: int = _env("idle_poll_s", 5, ge=1)
    # RQ's registration of a worker expires after this; /readyz counts a worker as alive only while its
    # heartbeat is fresh (heartbeat_fresh_s, 11 s with the defaults), however long it stays registered.
    worker_ttl_s: int = _env("worker_ttl_s", 60, ge=2)

    # The key that seals images and maps before they reach Redis (services.explain.sealing): urlsafe base64 of
    # 32 bytes; empty: read (or create, 0600) the key file, by default $DISEASEID_DATA_DIR/keys/store.key.
    store_key: SecretStr = Field(SecretStr(""), validation_alias=AliasChoices("DISEASEID_STORE_KEY"))
    store_key_file: str = Field("", validation_alias=AliasChoices("DISEASEID_STORE_KEY_FILE"))

    # Which models a worker loads at start: "all", "none", or a list like "tumor/student,dementia".
    preload: str = _env("preload", "all")
    # Explain a blank slice with each preloaded model at start, so no client pays for tracing the model.
    warmup: bool = _env("warmup", True)
    # Fault injection for tests: each job sleeps this long before computing.
    debug_delay_s: float = _env("debug_delay_s", 0.0, ge=0)


    # How often the API hands back the jobs of workers whose connections to Redis closed (services.explain.recovery).
    orphan_check_interval_s: float = _env("orphan_check_interval_s", 1.0, gt=0)

    @property
    def reconnect_settle_s(self) -> float:
        """After a Redis start, the longest a live worker may go without a connection: its next heartbeat (busy)
        or its next poll (idle), plus a second."""
        return max(self.heartbeat_interval_s, self.idle_poll_s) + 1.0

    @property
    def heartbeat_fresh_s(self) -> float:
        """A worker heard from within this many seconds is alive (see services.explain.liveness)."""
        from services.explain.liveness import fresh_within

        return fresh_within(self.heartbeat_interval_s, self.idle_poll_s, self.worker_ttl_s)


@lru_cache(maxsize=1)
def get_settings() -> ExplainSettings:
    return ExplainSettings()
