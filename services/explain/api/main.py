"""The explain API: ``uvicorn services.explain.api.main:app``.

``create_app(settings)`` builds a fresh app (tests build theirs with their own settings); ``app`` is the
one built from the environment.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry
from rq import Queue

from services.common.app import FORM_OVERHEAD, build_app
from services.common.errors import QueueUnavailable
from services.common.metrics import HttpMetrics
from services.explain.api.metrics import QueueCollector, RequestMetrics
from services.explain.api.routers import health, jobs, results
from services.explain.recovery import requeue_orphans
from services.explain.redis_store import ExplainStore
from services.explain.sealing import Sealer
from services.explain.settings import ExplainSettings, get_settings

log = logging.getLogger("services.explain")

DESCRIPTION = "Grad-CAM and LRP heatmaps for brain-MRI slices, computed by queued workers."


def connect(settings: ExplainSettings, asynchronous: bool = False) -> Redis | AsyncRedis:
    client, retry = (AsyncRedis, AsyncRetry) if asynchronous else (Redis, Retry)
    return client.from_url(
        settings.redis_url,
        socket_connect_timeout=settings.redis_connect_timeout_s,
        # Long enough for GET /explain/{id}?wait=..., which blocks on Redis.
        socket_timeout=settings.max_wait_s + 5,
        health_check_interval=10,
        # A pooled connection from before a Redis restart fails once; a quick retry on a fresh one
        # hides that, while a Redis that is really down still answers 503 within a second.
        retry=retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        retry_on_error=[RedisConnectionError],
    )


def _queue_unavailable(exc: Exception) -> QueueUnavailable:
    return QueueUnavailable("the explain queue (Redis) is unreachable; try again in a few seconds")


def create_app(settings: ExplainSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    redis = connect(settings)
    async_redis = connect(settings, asynchronous=True)
    queue = Queue(settings.queue, connection=redis)
    sealer = Sealer.from_settings(settings.store_key.get_secret_value(), settings.store_key_file)
    store = ExplainStore(redis, settings.ttl_s, sealer)
    registry = CollectorRegistry()
    registry.register(QueueCollector(queue, store, settings.heartbeat_fresh_s))

    async def hand_back_orphans() -> None:
        """Every orphan_check_interval_s: the jobs of workers that died go back on the queue."""
        while True:
            await asyncio.sleep(settings.orphan_check_interval_s)
            try:
                await asyncio.to_thread(requeue_orphans, queue, store, settings.reconnect_settle_s)
            except RedisError:  # Redis away: /readyz and the clients hear of it; try again next time
                pass
            except Exception:  # noqa: BLE001 - a bug here must not stop the loop
                log.exception("handing back the jobs of dead workers failed")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info("explain API on queue %r at %s, results kept %d s", settings.queue,
                 redis.get_connection_kwargs().get("host"), settings.ttl_s)
        reaper = asyncio.create_task(hand_back_orphans())
        yield
        reaper.cancel()
        with suppress(asyncio.CancelledError):
            await reaper
        await async_redis.aclose()
        redis.close()

    return build_app(
        name="explain", title="diseaseid explain", version="1", description=DESCRIPTION,
        settings=settings, lifespan=lifespan, routers=(jobs.router, results.router, health.router),
        state={"queue": queue, "store": store, "sealer": sealer, "async_redis": async_redis,
               "metrics_registry": registry, "request_metrics": RequestMetrics(registry)},
        http_metrics=HttpMetrics(registry),
        # Every path: what /explain takes (the other routes have no body to speak of).
        body_limits={}, default_body_limit=settings.max_upload_bytes + FORM_OVERHEAD,
        translate_errors={RedisError: _queue_unavailable},
    )


app = create_app()
