"""Inference service benchmark: latency percentiles and throughput of ``POST /predict`` over loopback.

Starts ``uvicorn services.inference.main:app`` (access log off, as in production) and sends one tumor slice
(a 5 kB JPEG) with the student and the teacher, from 1 and from 16 concurrent keep-alive clients. The
load generator is a minimal HTTP/1.1 client over asyncio streams that sends a pre-encoded multipart body,
so that the client costs the shared CPUs as little as possible; every response is checked (status 200,
a label in the JSON). Goals (issue 5): student p50 <= 10 ms at 1 client, >= 100 requests/s at 16, no errors.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
import uuid

from tests.services.conftest import FIXTURES, run_server

GOAL_P50_MS = 10.0
GOAL_RPS = 100.0


def _multipart(image: bytes, task: str, model: str) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="task"\r\n\r\n{task}\r\n'.encode(),
             f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'.encode(),
             (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="slice.jpg"\r\n'
              "Content-Type: image/jpeg\r\n\r\n").encode() + image + b"\r\n",
             f"--{boundary}--\r\n".encode()]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _request_bytes(port: int, image: bytes, task: str, model: str) -> bytes:
    body, ctype = _multipart(image, task, model)
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


async def _load(port: int, request: bytes, clients: int, total: int, warmup: int) -> dict:
    """``clients`` keep-alive connections share ``total`` timed requests after ``warmup`` untimed ones."""
    latencies: list[float] = []
    server_ms: list[float] = []
    errors = 0
    remaining = total
    warm = 0
    all_warm, go = asyncio.Event(), asyncio.Event()

    async def client() -> None:
        nonlocal remaining, errors, warm
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(max(1, warmup // clients)):
                await _one(reader, writer, request)
            warm += 1
            if warm == clients:
                all_warm.set()
            await go.wait()
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                status, body = await _one(reader, writer, request)
                latencies.append(time.perf_counter() - start)
                data = json.loads(body) if status == 200 else {}
                if "label" not in data:
                    errors += 1
                    continue
                server_ms.append(data["timing_ms"]["total"])
        finally:
            writer.close()

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    waiter = asyncio.create_task(all_warm.wait())
    await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for t in tasks:  # a client that failed to connect or warm up fails the run here
        if t.done() and t.exception():
            raise t.exception()
    start = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    return _summary(latencies, server_ms, errors, wall, clients)


def _pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(latencies: list[float], server_ms: list[float], errors: int, wall: float, clients: int) -> dict:
    ms = sorted(x * 1000 for x in latencies)
    srv = sorted(server_ms)
    return {"clients": clients, "requests": len(ms), "errors": errors, "seconds": round(wall, 3),
            "throughput_rps": round(len(ms) / wall, 1),
            "p50_ms": round(_pct(ms, 0.50), 2), "p95_ms": round(_pct(ms, 0.95), 2),
            "p99_ms": round(_pct(ms, 0.99), 2), "mean_ms": round(sum(ms) / len(ms), 2),
            "server_p50_ms": round(_pct(srv, 0.50), 2) if srv else None}


def _table(rows: list[dict]) -> str:
    cols = [("model", "model", "<8", ""), ("clients", "clients", ">7", ""),
            ("requests", "requests", ">8", ""), ("errors", "errors", ">6", ""),
            ("p50 ms", "p50_ms", ">8", ".2f"), ("p95 ms", "p95_ms", ">8", ".2f"),
            ("p99 ms", "p99_ms", ">8", ".2f"), ("req/s", "throughput_rps", ">8", ".1f"),
            ("server p50", "server_p50_ms", ">10", ".2f")]
    head = " ".join(f"{title:{align}}" for title, _, align, _ in cols)
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = [format(r[key], fmt) if r[key] is not None else "-" for _, key, _, fmt in cols]
        lines.append(" ".join(f"{c:{align}}" for c, (_, _, align, _) in zip(cells, cols, strict=True)))
    return "\n".join(lines)


def run(quick: bool = False, env: dict[str, str] | None = None) -> dict:
    """Benchmark /predict with a bounded number of requests; the rows, and whether the goals are met."""
    n_single, n_multi = (100, 400) if quick else (400, 1600)
    threads = os.environ.get("DISEASEID_TORCH_THREADS", "1")
    workers = os.environ.get("DISEASEID_INFERENCE_WORKERS", str(min(4, os.cpu_count() or 1)))
    server_env = {"DISEASEID_API_KEYS": "", "DISEASEID_TORCH_THREADS": threads,
                  "DISEASEID_INFERENCE_WORKERS": workers, "DISEASEID_LOG_LEVEL": "WARNING", **(env or {})}
    image_path = sorted((FIXTURES / "tumor" / "glioma").glob("*.jpg"))[0]
    image = image_path.read_bytes()
    rows = []
    with run_server("services.inference.main:app", server_env, ready_path="/readyz",
                    args=("--no-access-log",)) as server:
        port = int(server.url.rsplit(":", 1)[1])
        for model in ("student", "teacher"):
            request = _request_bytes(port, image, "tumor", model)
            for clients, total in ((1, n_single), (16, n_multi)):
                row = asyncio.run(_load(port, request, clients, total, warmup=max(20, 2 * clients)))
                rows.append({"model": model, **row})
    print(f"POST /predict, tumor, {len(image):,}-byte JPEG {image_path.name}; torch threads {threads}, "
          f"inference workers {workers}, {os.cpu_count()} CPUs")
    print(_table(rows))
    student = {r["clients"]: r for r in rows if r["model"] == "student"}
    goals = {"student_p50_ms_at_1": student[1]["p50_ms"] <= GOAL_P50_MS,
             "student_rps_at_16": student[16]["throughput_rps"] >= GOAL_RPS,
             "no_errors": all(r["errors"] == 0 for r in rows)}
    print("goals: " + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in goals.items()))
    return {"endpoint": "POST /predict", "task": "tumor", "image_bytes": len(image),
            "torch_threads": int(threads), "inference_workers": int(workers), "rows": rows, "goals": goals}


if __name__ == "__main__":
    import sys

    run(quick="--quick" in sys.argv)
