"""Fixtures for the bot tests: a fake Telegram Bot API, real Redis, and the bot as a subprocess."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from PIL import Image

from tests.bot.fake_telegram import FakeTelegram
from tests.services.conftest import TEST_KEYS, run_server
from tests.services.redis_server import RedisServer

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


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


@contextmanager
def run_worker(env: dict[str, str], timeout: float = 60.0) -> Iterator[subprocess.Popen]:
    """``python -m services.explain.worker`` until the block ends (killed with its process group).

    SIGKILL after a short grace: an idle RQ worker can take over 10 s to honour SIGTERM, and a test worker
    has nothing to save.
    """
    log = tempfile.NamedTemporaryFile(prefix="explain-worker-", suffix=".log", delete=False)
    full_env = {**os.environ, "DISEASEID_TORCH_THREADS": "1", "PYTHONUNBUFFERED": "1", **env}
    proc = subprocess.Popen([sys.executable, "-m", "services.explain.worker"], cwd=REPO, env=full_env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(2)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()
        os.unlink(log.name)


@pytest.fixture(scope="session")
def services(redis_server) -> Iterator[dict[str, str]]:
    """The real inference and explain services (API keys on) with Redis and one explain worker behind them."""
    auth = {"DISEASEID_API_KEYS": ",".join(TEST_KEYS)}
    explain_env = {**auth, "REDIS_URL": redis_server.url,
                   "DISEASEID_EXPLAIN_PRELOAD": "tumor/student,dementia/student"}
    with ExitStack() as stack:
        # Started together: model loading in the three processes overlaps.
        stack.enter_context(run_worker(explain_env))
        inference = stack.enter_context(run_server("services.inference.main:app", auth,
                                                   ready_path="/readyz"))
        explain = stack.enter_context(run_server("services.explain.main:app", explain_env,
                                                 ready_path="/readyz"))
        yield {"INFERENCE_URL": inference.url, "EXPLAIN_URL": explain.url, "DISEASEID_API_KEY": TEST_KEYS[1],
               "REDIS_URL": redis_server.url}
