"""The local Redis of `make up`: ``wait`` gives up on time, ``serve`` outlives its clients on SIGTERM and
never outlives itself."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from tests.deploy.processes import child_pids
from tests.helpers import free_port
from tests.services.conftest import REPO
from tests.services.redis_server import answers_ping as answers

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")


def local_redis(*args: str) -> list[str]:
    return [sys.executable, "-m", "dev.local_redis", *args]


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[subprocess.Popen, int]]:
    port = free_port()
    argv = local_redis("serve", "--port", str(port), "--dir", str(tmp_path), "--drain-s", "5",
                       "--log-level", "warning")
    proc = subprocess.Popen(argv, cwd=REPO, start_new_session=True)
    try:
        assert wait_until(lambda: answers(port), 15), "redis-server did not come up"
        yield proc, port
    finally:
        for pid in child_pids(proc.pid):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_wait_gives_up_after_its_timeout() -> None:
    started = time.monotonic()
    argv = local_redis("wait", "--url", f"redis://127.0.0.1:{free_port()}/0", "--timeout", "0.5")
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "did not answer within" in result.stderr
    assert time.monotonic() - started < 10


def test_wait_returns_once_redis_answers(server) -> None:
    _, port = server
    result = subprocess.run(local_redis("wait", "--url", f"redis://127.0.0.1:{port}/0", "--timeout", "5"),
                            cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@linux_only
def test_sigterm_waits_for_clients_to_leave_then_stops(server, tmp_path) -> None:
    proc, port = server
    client = Redis(port=port)
    client.set("in-flight", "result")  # a worker storing its last result
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.7)
    assert proc.poll() is None and client.get("in-flight") == b"result"  # still serving its client
    client.close()
    assert proc.wait(5) == 0
    assert not answers(port)
    assert not list(tmp_path.iterdir()), "nothing is written to disk without --persist"


@linux_only
def test_killing_the_wrapper_takes_redis_down(server) -> None:
    proc, port = server
    (redis_pid,) = child_pids(proc.pid)
    proc.kill()  # SIGKILL: no handler runs; the kernel's parent-death signal must stop redis-server
    proc.wait(5)
    assert wait_until(lambda: not answers(port), 5)
    assert wait_until(lambda: not Path(f"/proc/{redis_pid}").exists()
                      or " Z " in Path(f"/proc/{redis_pid}/stat").read_text(), 5)
