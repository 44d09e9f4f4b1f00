"""Flood benchmark: 32 clients send large images to each API while one client sends ordinary slices.

The attack it replays: a 182 KB black 7,900 x 7,900 PNG cost ~0.9 s of CPU to decode; eight at once took the
explain API from 1.0 to 4.5 GB, and a flood held a normal /predict for 20 s. Two floods per API, each for a
fixed time, against real servers (uvicorn; the explain API with its Redis, no worker needed to accept jobs):

* ``7900px``: that PNG. It is now over the pixel cap and refused (422) from its header;
* ``4096px``: a black 4,096 x 4,096 RGB PNG (49 KB), the largest image still accepted: decoded (PNG has no
  draft mode: full decode, then reduced) at most ``max_heavy_decodes`` at a time, the rest 503 ``busy``.

Meanwhile one client sends an ordinary slice every 100 ms; we report its p50/p99, the answers the flood got,
the server's peak RSS (sampled every 20 ms) and its RSS two seconds after the flood. Goals: RSS under
1.5 GB per API process, normal p99 under 1 s. The clients run on the same machine as the servers (on the
2-core development box they take a good share of the CPU themselves).

The ordinary client runs in its own process, as a user who is not the attacker would. (Until 2026-11-28 it
shared the attackers' event loop, so its latency included the wait for 32 attacker coroutines in the *client*:
``--shared-client`` in ``python -m bench.flood`` measures that way for comparison.) For /predict the server's
own ``timing_ms.total`` of each ordinary request is reported too (``server p99``): the time inside the route,
without the wait in the server's event loop and the client's.

bench/results/flood.txt and flood.json are ``python -m bench --only flood --out DIR`` copied from DIR.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import multiprocessing
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from PIL import Image

from tests.services.conftest import fixture_bytes, run_server
from tests.services.explain_stack import API_KEY, ExplainStack

CLIENTS = 32
GOAL_RSS_MB, GOAL_P99_MS = 1536, 1000


def png(side: int, mode: str) -> bytes:
    if side > 5000:  # a valid 1-bit PNG of zeros, written by hand: PIL would allocate it first
        from tests.helpers import bomb_png

        return bomb_png(side)
    buf = io.BytesIO()
    Image.new(mode, (side, side)).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, rss_mb(self.pid))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def _ordinary_client(url: str, path: str, form: dict, headers: dict, normal: bytes, seconds: float,
                     start_at: float, results) -> None:
    """The ordinary user, in a process of its own: one slice every 100 ms until ``seconds`` have passed."""
    latencies, server_ms, outcomes = [], [], Counter()
    while time.time() < start_at:
        time.sleep(0.005)
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            r = client.post(path, data=form, files={"file": ("s.jpg", normal, "image/jpeg")})
            latencies.append((time.perf_counter() - started) * 1000)
            outcomes[f"normal {r.status_code}"] += 1
            total = r.json().get("timing_ms", {}).get("total") if r.status_code == 200 else None
            if total is not None:
                server_ms.append(total)
            time.sleep(0.1)
    results.put((latencies, server_ms, dict(outcomes)))


async def _flood(url: str, path: str, form: dict, headers: dict, flood_image: bytes | None, normal: bytes,
                 seconds: float, shared_client: bool = False) -> tuple[Counter, list[float], list[float]]:
    outcomes: Counter = Counter()
    latencies: list[float] = []
    server_ms: list[float] = []
    deadline = time.monotonic() + seconds
    ordinary_process = None
    if not shared_client:
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        start_at = time.time() + 3.0  # the child's interpreter and imports are ready by then
        ordinary_process = ctx.Process(target=_ordinary_client,
                                       args=(url, path, form, headers, normal, seconds, start_at, results))
        ordinary_process.start()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=CLIENTS + 4)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120, limits=limits) as client:

        async def attacker() -> None:
            while time.monotonic() < deadline:
                try:
                    r = await client.post(path, data=form, files={"file": ("x.png", flood_image, "image/png")})
                    outcomes[r.status_code] += 1
                    if r.status_code == 503:  # a polite client honours Retry-After; a hostile one would not
                        await asyncio.sleep(0.05)
                except httpx.HTTPError as exc:
                    outcomes[type(exc).__name__] += 1

        async def ordinary() -> None:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                r = await client.post(path, data=form, files={"file": ("s.jpg", normal, "image/jpeg")})
                latencies.append((time.perf_counter() - started) * 1000)
                outcomes[f"normal {r.status_code}"] += 1
                total = r.json().get("timing_ms", {}).get("total") if r.status_code == 200 else None
                if total is not None:
                    server_ms.append(total)
                await asyncio.sleep(0.1)

        attackers = [attacker() for _ in range(CLIENTS)] if flood_image is not None else []
        await asyncio.gather(*([ordinary()] if shared_client else []), *attackers)
    if ordinary_process is not None:
        latencies, server_ms, normal_outcomes = await asyncio.to_thread(results.get, True, seconds + 60)
        ordinary_process.join(10)
        outcomes.update(normal_outcomes)
    return outcomes, latencies, server_ms


def measure(name: str, url: str, pid: int, path: str, form: dict, headers: dict, seconds: float,
            shared_client: bool = False) -> dict:
    normal = fixture_bytes("tumor", "glioma")
    floods = {"none": None, "7900px": png(7900, "1"), "4096px": png(4096, "RGB")}
    rows = {}
    for flood, image in floods.items():
        before = rss_mb(pid)
        sampler = RssSampler(pid)
        sampler.start()
        outcomes, latencies, server_ms = asyncio.run(_flood(url, path, form, headers, image, normal,
                                                            seconds if image is not None else min(seconds, 3),
                                                            shared_client))
        sampler.stop.set()
        sampler.join()
        time.sleep(2)
        row = {"flood_image_bytes": len(image) if image else 0, "rss_before_mb": round(before),
               "rss_peak_mb": round(max(sampler.peak, before)), "rss_after_mb": round(rss_mb(pid)),
               "normal_n": len(latencies), "normal_p50_ms": round(_pct(latencies, 0.5), 1),
               "normal_p99_ms": round(_pct(latencies, 0.99), 1),
               "normal_server_p99_ms": round(_pct(server_ms, 0.99), 1) if server_ms else None,
               "outcomes": {str(k): v for k, v in sorted(outcomes.items(), key=str)}}
        rows[flood] = row
        ok = row["rss_peak_mb"] < GOAL_RSS_MB and row["normal_p99_ms"] < GOAL_P99_MS
        print(f"{name:9s} {flood:7s} {row['flood_image_bytes']:>8,} {row['rss_before_mb']:>6} "
              f"{row['rss_peak_mb']:>6} {row['rss_after_mb']:>6} {row['normal_n']:>5} "
              f"{row['normal_p50_ms']:>8} {row['normal_p99_ms']:>8} {row['normal_server_p99_ms'] or '-':>8}  "
              f"{'ok ' if ok else 'MISS'} "
              f"{row['outcomes']}")
    return rows


def run(quick: bool = False, shared_client: bool = False, apis: tuple[str, ...] = ("inference", "explain")) -> dict:
    seconds = 4.0 if quick else 10.0
    print(f"{CLIENTS} clients flood for {seconds:g} s; one client sends a 512x512 JPEG every 100 ms meanwhile, "
          + ("in the attackers' event loop" if shared_client else "from its own process"))
    print(f"goals: peak RSS < {GOAL_RSS_MB} MB per API process, normal p99 < {GOAL_P99_MS} ms")
    print("api       flood   image B   RSS MB: before  peak  after  normal: n  p50 ms  p99 ms  server p99  goal  "
          "answers")
    out = {"clients": CLIENTS, "seconds": seconds, "ordinary_client": "shared" if shared_client else "process"}
    if "inference" in apis:
        with run_server("services.inference.main:app", {"DISEASEID_API_KEYS": ""}, ready_path="/readyz",
                        timeout=600) as server:  # four models load first; minutes on a loaded 2-core box
            out["inference"] = measure("inference", server.url, server.proc.pid, "/predict", {"task": "tumor"},
                                       {}, seconds, shared_client)
    if "explain" in apis:
        stack = ExplainStack.start(DISEASEID_EXPLAIN_TTL_S="600")
        try:
            out["explain"] = measure("explain", stack.api.url, stack.api.proc.pid, "/explain",
                                     {"task": "tumor", "methods": "gradcam"}, {"X-API-Key": API_KEY}, seconds,
                                     shared_client)
        finally:
            stack.close()
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m bench.flood", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--shared-client", action="store_true",
                    help="the ordinary client in the attackers' event loop (how it was measured before)")
    ap.add_argument("--api", nargs="+", choices=("inference", "explain"), default=("inference", "explain"))
    cli = ap.parse_args()
    run(cli.quick, cli.shared_client, tuple(cli.api))
