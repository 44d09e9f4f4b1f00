"""Fixtures for the bot tests: a fake Telegram Bot API, real Redis, and the bot as a subprocess."""
from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.bot.fake_telegram import FakeTelegram
from tests.services.conftest import run_server
from tests.services.explain_stack import API_KEY, ExplainStack
from tests.services.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def telegram():
    with FakeTelegram() as server:
        yield server


def tumor_slice(cls: str = "glioma", index: int = 0) -> Path:
    return sorted((FIXTURES / "tumor" / cls).glob("*.jpg"))[index]


def dementia_slices(subject: str = "MildDemented-002") -> list[Path]:
    cls = subject.split("-")[0]
    return sorted((FIXTURES / "dementia" / cls).glob(f"{subject}_*.jpg"))


def decode_png(content: bytes) -> Image.Image:
    assert content[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    image = Image.open(io.BytesIO(content))
    image.load()
    return image


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, str]]:
    """The real explain service (Redis, API, one worker) and inference service, sharing one API key.

    Reuses the explain helper's ExplainStack; results live 10 minutes here, not the 4 s its tests use.
    The worker loads its models while the inference service loads its own.
    """
    stack = ExplainStack.start(DISEASEID_EXPLAIN_TTL_S="600",
                               DISEASEID_EXPLAIN_PRELOAD="tumor/student,dementia/student")
    try:
        worker_error: list[BaseException] = []

        def start_worker() -> None:
            try:
                stack.ensure_worker()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the fixture's thread
                worker_error.append(exc)

        starting = threading.Thread(target=start_worker)
        starting.start()
        try:
            with run_server("services.inference.main:app", {"DISEASEID_API_KEYS": API_KEY},
                            ready_path="/readyz") as inference:
                starting.join()
                if worker_error:
                    raise worker_error[0]
                yield {"INFERENCE_URL": inference.url, "EXPLAIN_URL": stack.api.url,
                       "DISEASEID_API_KEY": API_KEY, "REDIS_URL": stack.redis.url}
        finally:
            starting.join()
    finally:
        stack.close()
