"""The explain dedup entry lives exactly as long as the setting says (not forever, not shorter), like the job."""
from __future__ import annotations

import pytest
from redis import Redis
from rq import Queue

from services.explain.api.submit import ExplainRequest, submit
from services.explain.redis_store import ExplainStore
from services.explain.settings import ExplainSettings
from tests.services.redis_server import RedisServer


@pytest.fixture(scope="module")
def queue():
    with RedisServer() as server:
        client = Redis.from_url(server.url)
        yield Queue("explain", connection=client)
        client.close()


@pytest.mark.parametrize("ttl", [123, 7200])
def test_dedup_key_ttl_equals_the_setting(queue, ttl):
    queue.connection.flushdb()
    req = ExplainRequest(pixels=bytes(224 * 224 * 3), image_sha256="ef" * 32, task="tumor", role="student",
                         methods=("gradcam",), target=None)
    job, deduplicated = submit(queue, ExplainSettings(ttl_s=ttl), req)
    assert not deduplicated
    key = ExplainStore.dedup_key(req.key)
    assert queue.connection.get(key).decode() == job.id
    pttl = queue.connection.pttl(key)  # -1: no expiry, -2: no key
    assert (ttl - 5) * 1000 < pttl <= ttl * 1000, pttl
    again, deduplicated = submit(queue, ExplainSettings(ttl_s=ttl), req)
    assert deduplicated and again.id == job.id
