"""Fixtures for the bot tests: a fake Telegram Bot API, real Redis, and the bot as a subprocess."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from tests.bot.fake_telegram import FakeTelegram
from tests.services.redis_server import RedisServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="session")
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


def png_bytes(path: Path) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(content: bytes) -> Image.Image:
    assert content[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    image = Image.open(io.BytesIO(content))
    image.load()
    return image
