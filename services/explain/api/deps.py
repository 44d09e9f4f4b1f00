"""What routes need, as ``Annotated`` dependencies: the settings, the RQ queue, the result store."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis as AsyncRedis
from rq import Queue

from services.explain.redis_store import ExplainStore
from services.explain.settings import ExplainSettings


def _settings(request: Request) -> ExplainSettings:
    return request.app.state.settings


def _queue(request: Request) -> Queue:
    return request.app.state.queue


def _store(request: Request) -> ExplainStore:
    return request.app.state.store


def _async_redis(request: Request) -> AsyncRedis:
    return request.app.state.async_redis


Settings = Annotated[ExplainSettings, Depends(_settings)]
ExplainQueue = Annotated[Queue, Depends(_queue)]
Store = Annotated[ExplainStore, Depends(_store)]
# For the long poll only: waiting on Redis from the event loop holds no thread.
AsyncRedisClient = Annotated[AsyncRedis, Depends(_async_redis)]


def base_url(request: Request) -> str:
    """The service's own root URL as the client reached it (results link back to it)."""
    return str(request.base_url).rstrip("/")
