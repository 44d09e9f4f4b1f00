"""What the explain worker's two skipped round trips save a waiting client: the worker as shipped against the same
worker with RQ's own heartbeat steps (``dev.rq_plain_worker``), in interleaved rounds on one stack.

    .venv/bin/python -m dev.explain_round_trips_ab                  # student, 4 rounds of 40 jobs a side, ~3 min
    .venv/bin/python -m dev.explain_round_trips_ab --model teacher --jobs 30 --rounds 3

Per side: end to end and the worker's total (medians), the overhead (median of end to end less total) and
``bench.explain.overhead_parts``. The stack and requests are ``bench.explain``'s, each upload made distinct by a
JPEG comment so that no request hits the dedup cache.

2026-12-06 (runs of the /tmp script this replaces, the same method), overhead per job plain -> shipped: student
14.88 -> 12.94 (the job beat skipped only), 12.42 -> 11.94 and 12.36 -> 12.12 ms, teacher 11.58 -> 11.38 ms.
"""
from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

from bench.explain import BENCH_ENV, _post, _requests, overhead_parts
from tests.services.explain_stack import ExplainStack, wait_for_job

WORKERS = {"plain": "dev.rq_plain_worker", "shipped": "services.explain.worker"}


def distinct(requests):
    """``bench.explain``'s requests, each image given a JPEG comment of its own (new bytes, the same pixels)."""
    for i, (image, target) in enumerate(requests):
        tag = f"ab {i}".encode()
        yield image[:2] + b"\xff\xfe" + (len(tag) + 2).to_bytes(2, "big") + tag + image[2:], target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="student")
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    stack = ExplainStack.start(**BENCH_ENV, DISEASEID_DEVICE="cpu")
    results = {name: {"e2e": [], "total": [], "parts": []} for name in WORKERS}
    try:
        requests = distinct(_requests())
        for r in range(args.rounds):
            order = list(WORKERS) if r % 2 == 0 else list(WORKERS)[::-1]
            for name in order:
                worker = stack.start_worker(module=WORKERS[name])
                with stack.client() as client:
                    for _ in range(3):  # warm-up
                        wait_for_job(client, _post(client, *next(requests), args.model))
                    for _ in range(args.jobs):
                        sent, start = datetime.now(UTC), time.perf_counter()
                        body = wait_for_job(client, _post(client, *next(requests), args.model))
                        results[name]["e2e"].append((time.perf_counter() - start) * 1000)
                        results[name]["total"].append(body["result"]["timing_ms"]["total"])
                        results[name]["parts"].append(overhead_parts(sent, datetime.now(UTC), body))
                worker.stop()
    finally:
        stack.close()
    for name, d in results.items():
        e2e, total = statistics.median(d["e2e"]), statistics.median(d["total"])
        over = statistics.median(a - b for a, b in zip(d["e2e"], d["total"], strict=True))
        parts = {k: round(statistics.median(p[k] for p in d["parts"]), 2) for k in d["parts"][0]}
        print(f"{name}: end to end {e2e:.1f} ms, worker total {total:.1f} ms, ratio {e2e / total:.3f}, "
              f"overhead {over:.2f} ms {parts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
