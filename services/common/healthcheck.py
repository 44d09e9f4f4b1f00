"""Container health checks without curl (the slim image has none): exit 0 when healthy, 1 otherwise.

    python -m services.common.healthcheck http://127.0.0.1:8000/readyz   # an HTTP probe must answer 200
    python -m services.common.healthcheck --explain-worker               # a worker on this host beats

An explain worker has no HTTP port, so its check asks Redis whether a worker registered from this host
(a container's hostname is its own) has sent a heartbeat lately (services.common.liveness): the
same test the explain API's ``/readyz`` applies to all workers.

The three explain settings it needs are read from the environment here rather than through
``ExplainSettings``, whose import chain loads torch: a probe that runs every 30 s inside a busy worker
container should take milliseconds, not seconds. tests/deploy/test_healthcheck.py keeps the two readings
in agreement.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass


def http_ok(url: str, timeout_s: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200, f"{url}: {response.status}"
    except urllib.error.HTTPError as exc:  # 503 while loading, say
        return False, f"{url}: {exc.code}"
    except OSError as exc:
        return False, f"{url}: {exc}"


@dataclass(frozen=True)
class WorkerProbeSettings:
    """The explain settings the worker probe needs, read as ``ExplainSettings`` reads them."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    queue: str = "explain"
    worker_ttl_s: int = 60
    heartbeat_interval_s: float = 5.0
    idle_poll_s: int = 5

    @property
    def heartbeat_fresh_s(self) -> float:
        from services.common.liveness import fresh_within

        return fresh_within(self.heartbeat_interval_s, self.idle_poll_s, self.worker_ttl_s)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> WorkerProbeSettings:
        default = cls()
        return cls(
            redis_url=env.get("REDIS_URL") or env.get("DISEASEID_EXPLAIN_REDIS_URL") or default.redis_url,
            queue=env.get("DISEASEID_EXPLAIN_QUEUE") or default.queue,
            worker_ttl_s=int(env.get("DISEASEID_EXPLAIN_WORKER_TTL_S") or default.worker_ttl_s),
            heartbeat_interval_s=float(env.get("DISEASEID_EXPLAIN_HEARTBEAT_INTERVAL_S")
                                       or default.heartbeat_interval_s),
            idle_poll_s=int(env.get("DISEASEID_EXPLAIN_IDLE_POLL_S") or default.idle_poll_s),
        )


def explain_worker_alive(hostname: str) -> tuple[bool, str]:
    from redis import Redis
    from rq import Queue

    from services.common.liveness import alive_workers

    settings = WorkerProbeSettings.from_env()
    with Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2) as connection:
        queue = Queue(settings.queue, connection=connection)
        mine = [w for w in alive_workers(queue, settings.heartbeat_fresh_s) if w.hostname == hostname]
    return bool(mine), f"{len(mine)} live explain worker(s) on {hostname}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.common.healthcheck",
                                     description=__doc__.split("\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("url", nargs="?", help="an HTTP URL that must answer 200")
    target.add_argument("--explain-worker", action="store_true", help="a worker on this host is alive")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    try:
        ok, detail = (explain_worker_alive(socket.gethostname()) if args.explain_worker
                      else http_ok(args.url, args.timeout))
    except Exception as exc:  # noqa: BLE001 - any failure to check is "unhealthy", with the reason
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    print(("healthy: " if ok else "unhealthy: ") + detail, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
