"""Container health checks without curl (the slim image has none): exit 0 when healthy, 1 otherwise.

    python -m services.common.healthcheck http://127.0.0.1:8000/readyz   # an HTTP probe must answer 200
    python -m services.common.healthcheck --explain-worker               # a worker on this host beats

An explain worker has no HTTP port: its check (``services.explain.liveness.worker_alive_on``) asks Redis
whether a worker registered from this host has sent a heartbeat lately. It lives with the explain service; this
command only dispatches to it, so that every container's check is the same command.
"""
from __future__ import annotations

import argparse
import socket
import sys
import urllib.error
import urllib.request


def http_ok(url: str, timeout_s: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200, f"{url}: {response.status}"
    except urllib.error.HTTPError as exc:  # 503 while loading, say
        return False, f"{url}: {exc.code}"
    except OSError as exc:
        return False, f"{url}: {exc}"


def _explain_worker_alive(hostname: str) -> tuple[bool, str]:
    from services.explain.liveness import worker_alive_on

    return worker_alive_on(hostname)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.common.healthcheck",
                                     description=__doc__.split("\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("url", nargs="?", help="an HTTP URL that must answer 200")
    target.add_argument("--explain-worker", action="store_true", help="a worker on this host is alive")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    try:
        ok, detail = (_explain_worker_alive(socket.gethostname()) if args.explain_worker
                      else http_ok(args.url, args.timeout))
    except Exception as exc:  # noqa: BLE001 - any failure to check is "unhealthy", with the reason
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    print(("healthy: " if ok else "unhealthy: ") + detail, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
