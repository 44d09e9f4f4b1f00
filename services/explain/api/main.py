"""The explain API: ``uvicorn services.explain.api.main:app``.

``create_app(settings)`` builds a fresh app (tests build theirs with their own settings); ``app`` is the
one built from the environment.
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry
from rq import Queue

from services.common.auth import configure_auth, log_auth_mode
from services.common.body_limit import BodyLimitMiddleware
from services.common.errors import error_response, install_error_handlers
from services.common.logs import configure_logging
from services.common.metrics import HttpMetrics, HttpMetricsMiddleware
from services.common.uploads import DecodeGate, keep_uploads_in_memory
from services.explain.api.metrics import QueueCollector, RequestMetrics
from services.explain.api.routers import health, jobs, results
from services.explain.redis_store import ExplainStore
from services.explain.settings import ExplainSettings, get_settings

log = logging.getLogger("services.explain")

# Room for the multipart envelope and the form fields around the file.
FORM_OVERHEAD_BYTES = 64 * 1024


async def _queue_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("Redis unavailable on %s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "queue_unavailable",
                          "the explain queue (Redis) is unreachable; try again in a few seconds",
                          headers={"Retry-After": "2"})


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


def create_app(settings: ExplainSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    redis = connect(settings)
    async_redis = connect(settings, asynchronous=True)
    queue = Queue(settings.queue, connection=redis)
    store = ExplainStore(redis, settings.ttl_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log_auth_mode(settings.api_keys, "explain")
        log.info("explain API on queue %r at %s, results kept %d s", settings.queue,
                 redis.get_connection_kwargs().get("host"), settings.ttl_s)
        yield
        await async_redis.aclose()
        redis.close()

    app = FastAPI(title="diseaseid explain", version="1", lifespan=lifespan,
                  description="Grad-CAM and LRP heatmaps for brain-MRI slices, computed by queued workers.")
    app.state.settings = settings
    app.state.queue = queue
    app.state.store = store
    app.state.async_redis = async_redis
    app.state.decode_gate = DecodeGate(settings)
    configure_auth(app, settings.api_keys)
    install_error_handlers(app)
    app.add_exception_handler(RedisError, _queue_unavailable)

    registry = CollectorRegistry()
    registry.register(QueueCollector(queue, store, settings.heartbeat_fresh_s))
    app.state.metrics_registry = registry
    app.state.request_metrics = RequestMetrics(registry)
    app.add_middleware(HttpMetricsMiddleware, metrics=HttpMetrics(registry))
    app.add_middleware(BodyLimitMiddleware, default=settings.max_upload_bytes + FORM_OVERHEAD_BYTES)
    keep_uploads_in_memory(settings.max_upload_bytes + FORM_OVERHEAD_BYTES)

    app.include_router(jobs.router)
    app.include_router(results.router)
    app.include_router(health.router)
    return app


app = create_app()
