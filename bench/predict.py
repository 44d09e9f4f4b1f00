"""Inference service benchmark: latency percentiles and throughput of ``POST /predict`` over loopback.

Starts ``uvicorn services.inference.main:app`` (access log off, as in production) and sends one tumor slice
(a 5 kB JPEG) with the student and the teacher, from 1 and from 16 concurrent keep-alive clients. The
load generator is a minimal HTTP/1.1 client over asyncio streams that sends a pre-encoded multipart body,
so that the client costs the shared CPUs as little as possible; every response is checked (status 200,
a label in the JSON). Goals: student p50 <= 10 ms at 1 client, >= 100 requests/s at 16, no errors.

The serving goals (``bench.goals.SERVING_GOALS``), as ratios within this run: the 1-client p50 within 2 ms of
``predict()`` of the same model in this process (same thread count and runtime); 16 clients at >= 0.8 x cores x 1000
/ ``predict()`` ms; a 32-slice dementia study (``POST /predict/study``) in <= 0.5x the time of its 32 slices sent
one by one to the model the study used; and the 16-client p99 while every explain worker is busy (a real explain
stack, its queue kept full) <= 2x the idle p99.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path

import numpy as np

from bench.goals import describe, goal
from services.inference.settings import InferenceSettings
from tests.services.conftest import FIXTURES, run_server

GOAL_P50_MS = 10.0
GOAL_RPS = 100.0
GOAL_HTTP_OVERHEAD_MS = 2.0  # serving goal: /predict p50 at 1 client <= predict() + this
GOAL_RPS_SHARE = 0.8  # of cores x 1000 / predict() ms
GOAL_STUDY_RATIO = 0.5  # a study's time over its slices' one by one
GOAL_LOADED_P99_RATIO = 2.0  # p99 with every explain worker busy over the idle p99
BUSY_SHARE_NEEDED = 0.95  # the share of the measurement with every explain worker busy for that goal to count
STUDY_SLICES = 32


def _multipart(image: bytes | list[bytes], task: str, model: str | None, field: str = "file") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="task"\r\n\r\n{task}\r\n'.encode()]
    if model:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n{model}\r\n'.encode())
    for i, data in enumerate([image] if isinstance(image, bytes) else image):
        parts.append((f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="slice{i}.jpg"\r\n'
                      "Content-Type: image/jpeg\r\n\r\n").encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _request_bytes(port: int, image: bytes | list[bytes], task: str, model: str | None,
                   path: str = "/predict") -> bytes:
    body, ctype = _multipart(image, task, model, "file" if path == "/predict" else "files")
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\n"
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
    decode_ms: list[float] = []
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
                decode_ms.append(data["timing_ms"]["decode"])
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
    return {**_summary(latencies, server_ms, errors, wall, clients),
            "server_decode_p50_ms": round(float(np.median(decode_ms)), 2) if decode_ms else None}


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


def _predict_in_process_ms(model: str, image: bytes, threads: int, repeats: int, lone: int | None = None) -> float:
    """p50 of ``Predictor.predict`` on the decoded slice, in this process, with ``threads`` per pass and, where
    ``lone`` is above it, that many for a pass that runs alone (as the inference service runs a lone request:
    services.inference.settings, ``DISEASEID_LONE_THREADS``); same runtime setting as the server."""
    import torch

    from diseaseid.serving import Predictor
    from diseaseid.serving.runtime import set_lone_budget, set_thread_budget
    from services.common.images import decode_image_bytes
    from services.common.settings import ServiceSettings

    previous = torch.get_num_threads()
    set_thread_budget(threads)
    set_lone_budget(lone)
    try:
        predictor = Predictor.from_shipped("tumor", model, "cpu", ServiceSettings().runtime)
        array = decode_image_bytes(image, ServiceSettings()).array[None]
        for _ in range(5):
            predictor.predict(array)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            predictor.predict(array)
            times.append((time.perf_counter() - start) * 1000)
        return float(np.median(times))
    finally:
        set_lone_budget(None)
        set_thread_budget(previous)


async def _sequential(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      requests: list[bytes]) -> tuple[float, list[dict]]:
    """Seconds for ``requests`` sent one after another on one keep-alive connection, and their answers (each
    checked: status 200 and a subject or a label in the JSON, else an error)."""
    answers = []
    start = time.perf_counter()
    for request in requests:
        status, body = await _one(reader, writer, request)
        answer = json.loads(body) if body[:1] == b"{" else {}
        if status != 200 or not ("subject" in answer or "label" in answer):
            raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
        answers.append(answer)
    return time.perf_counter() - start, answers


def _server_ms(answers: list[dict]) -> dict:
    """The server's own timing of ``answers``, summed: decode (with the head crop and, for a study, its
    checks), inference (networks, OOD, calibration, the head) and total."""
    return {k: round(sum(a["timing_ms"][k] for a in answers), 1) for k in ("decode", "inference", "total")}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds process ``pid`` has used so far, all its threads (Linux: /proc), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _study_rounds(port: int, pid: int, study_request: bytes, slices: list[bytes], rounds: int) -> dict:
    """Rounds of (the study, then its slices one by one to the study's slice model), interleaved so that the
    machine's drift slows both alike; the first round warms up. Besides the wall time, the server's CPU time
    of each: on a machine busy with other work it shows the work done, which waiting for the CPU hides."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        _, (answer,) = await _sequential(reader, writer, [study_request])
        role = answer["slice_model"]["role"]
        singles = [_request_bytes(port, data, "dementia", role) for data in slices]
        r: dict = {k: [] for k in ("study_s", "singles_s", "study_server", "singles_server", "study_cpu_s",
                                   "singles_cpu_s")}
        for i in range(rounds + 1):
            cpu0 = cpu_seconds(pid)
            seconds, (answer,) = await _sequential(reader, writer, [study_request])
            cpu1 = cpu_seconds(pid)
            seconds_singles, single_answers = await _sequential(reader, writer, singles)
            cpu2 = cpu_seconds(pid)
            if i:
                r["study_s"].append(seconds)
                r["singles_s"].append(seconds_singles)
                r["study_server"].append(_server_ms([answer]))
                r["singles_server"].append(_server_ms(single_answers))
                if cpu0 is not None:
                    r["study_cpu_s"].append(cpu1 - cpu0)
                    r["singles_cpu_s"].append(cpu2 - cpu1)
    finally:
        writer.close()
    return {"answer": answer, "role": role, **r}


def study_vs_slices(port: int, pid: int, rounds: int) -> dict:
    """One dementia study of ``STUDY_SLICES`` slices (no model named: the server's choice) against the same
    slices sent one by one, on one connection, to the model the study used.

    "The model it uses": the study's slices are answered by ``slice_model``; where the subject-level head
    answered, it read the embeddings of ``model.reads``. The server answers a head's study with the head's
    backbone, so that both are one network: then the single requests go to it, and each runs what the study
    runs per slice (that network and the OOD detector). Were they two networks, the study would run both per
    slice against the singles' one, and the ratio says so (``networks``)."""
    paths = sorted((FIXTURES / "dementia").glob("*/*.jpg"))
    slices = [paths[i % len(paths)].read_bytes() for i in range(STUDY_SLICES)]
    study_request = _request_bytes(port, slices, "dementia", None, "/predict/study")
    r = asyncio.run(_study_rounds(port, pid, study_request, slices, rounds))
    answer = r["answer"]
    reads = answer["model"].get("reads")
    networks = [answer["slice_model"]["name"]] + ([reads] if reads and reads != answer["slice_model"]["name"] else [])
    ratios = [a / b for a, b in zip(r["study_s"], r["singles_s"], strict=True)]
    median = {k: {m: float(np.median([x[m] for x in r[k]])) for m in ("decode", "inference", "total")}
              for k in ("study_server", "singles_server")}
    return {"slices": STUDY_SLICES, "model": answer["model"]["name"], "slice_model": answer["slice_model"]["name"],
            "compared_with": f"{STUDY_SLICES} x POST /predict role={r['role']} ({answer['slice_model']['name']})",
            "networks_per_slice": networks, "aggregation": answer["aggregation"]["method"],
            "study_ms_p50": round(float(np.median(r["study_s"])) * 1000, 1),
            "slices_one_by_one_ms_p50": round(float(np.median(r["singles_s"])) * 1000, 1),
            "server_ms_p50": {"study": median["study_server"], "slices_one_by_one": median["singles_server"]},
            "ratios": [round(x, 3) for x in ratios], "ratio": round(float(np.median(ratios)), 3),
            "cpu_s_p50": ({"study": round(float(np.median(r["study_cpu_s"])), 3),
                           "slices_one_by_one": round(float(np.median(r["singles_cpu_s"])), 3)}
                          if r["study_cpu_s"] else None),
            "cpu_ratio": (round(float(np.median([a / b for a, b in zip(r["study_cpu_s"], r["singles_cpu_s"],
                                                                        strict=True)])), 3)
                          if r["study_cpu_s"] else None)}


def under_explain_load(port: int, request: bytes, total: int, workers: int, depth: int = 8,
                       every_s: float = 0.1) -> dict:
    """16 clients on /predict while ``workers`` explain workers (a real stack: Redis, API, workers as make up
    starts them) are kept busy: a feeder thread tops the queue up to ``depth`` teacher jobs for as long as the
    measurement runs, and samples the workers' state every ``every_s``; ``busy_share`` is the share of samples
    with every worker busy (a fixed batch of jobs drained before a fast machine's measurement ended)."""
    import threading

    from rq import Queue, Worker

    from bench.explain import BENCH_ENV, _post, _requests
    from tests.services.explain_stack import ExplainStack

    stack = ExplainStack.start(**BENCH_ENV)
    stop = threading.Event()
    samples: list[int] = []

    def distinct():  # the fixtures' pairs repeat after 80; a JPEG comment makes each upload's bytes new
        for i, (image, target) in enumerate(_requests()):
            tag = f"bench {i}".encode()
            yield image[:2] + b"\xff\xfe" + (len(tag) + 2).to_bytes(2, "big") + tag + image[2:], target

    def feed() -> None:
        explain_requests = distinct()
        with stack.client() as client, stack.redis_client() as r:
            while not stop.is_set():
                queued = sum(q.count for q in Queue.all(connection=r))
                for _ in range(max(0, depth - queued)):
                    _post(client, *next(explain_requests), model="teacher")
                samples.append(sum(w.get_state() == "busy" for w in Worker.all(connection=r)))
                stop.wait(every_s)

    try:
        for _ in range(workers):
            stack.start_worker()
        feeder = threading.Thread(target=feed, name="explain-feeder", daemon=True)
        feeder.start()
        time.sleep(2.0)
        first = len(samples)
        row = asyncio.run(_load(port, request, 16, total, warmup=32))
        during = samples[first:]
        stop.set()
        feeder.join(timeout=30)
    finally:
        stop.set()
        stack.close()
    share = sum(n >= workers for n in during) / len(during) if during else 0.0
    return {"explain_workers": workers, "busy_samples": len(during), "busy_share": round(share, 3), **row}


PARTS = ("load", "study", "busy")  # --part: /predict under load, the study against its slices, under explain load


def run(quick: bool = False, env: dict[str, str] | None = None, parts: tuple[str, ...] | None = None) -> dict:
    """Benchmark /predict with a bounded number of requests; the rows, and the goals as ratios. ``parts``: a
    subset of PARTS (None: all)."""
    parts = tuple(parts or PARTS)
    n_single, n_multi = (100, 400) if quick else (400, 1600)
    threads = os.environ.get("DISEASEID_TORCH_THREADS", "1")
    workers = os.environ.get("DISEASEID_INFERENCE_WORKERS", str(min(4, os.cpu_count() or 1)))
    server_env = {"DISEASEID_API_KEYS": "", "DISEASEID_TORCH_THREADS": threads,
                  "DISEASEID_INFERENCE_WORKERS": workers, "DISEASEID_LOG_LEVEL": "WARNING", **(env or {})}
    # a lone request's threads, as the server computes them (services.inference.settings)
    lone = InferenceSettings(lone_threads=int(server_env.get("DISEASEID_LONE_THREADS")
                                              or os.environ.get("DISEASEID_LONE_THREADS", "0"))).lone_pass_threads()
    image_path = sorted((FIXTURES / "tumor" / "glioma").glob("*.jpg"))[0]
    image = image_path.read_bytes()
    rows, study, loaded, in_process = [], None, None, {}
    explain_workers = int(os.environ.get("BENCH_EXPLAIN_WORKERS", "1"))  # make up's default
    if "load" in parts:
        # per core (the requests/s formula: one pass per core at a time) and as a lone request runs (the p50 at
        # one client, whose pass has the idle cores); before the server starts: measured after the load, with the
        # server's processes winding down, the lone figures were 2-3 ms above a script's run alone
        # (/tmp/lone_inproc.py, quiet machine: 4.5 and 10.5 ms)
        in_process = {model: {"per_core": _predict_in_process_ms(model, image, int(threads), 50 if quick else 200),
                              "lone": _predict_in_process_ms(model, image, int(threads), 50 if quick else 200,
                                                             lone)}
                      for model in ("student", "teacher")}
    # keep-alive past uvicorn's 5 s: a client that waits for the others to warm up (slow while explain jobs
    # run) must find its connection still open
    # up to 10 minutes to start: a fresh checkout exports the served graphs first
    with run_server("services.inference.main:app", server_env, ready_path="/readyz", timeout=600,
                    args=("--no-access-log", "--timeout-keep-alive", "120")) as server:
        port = int(server.url.rsplit(":", 1)[1])
        if "load" in parts or "busy" in parts:
            for model in ("student", "teacher") if "load" in parts else ("student",):
                request = _request_bytes(port, image, "tumor", model)
                for clients, total in ((1, n_single), (16, n_multi)):
                    row = asyncio.run(_load(port, request, clients, total, warmup=max(20, 2 * clients)))
                    rows.append({"model": model, **row})
        if "study" in parts:
            try:
                study = study_vs_slices(port, server.proc.pid, rounds=2 if quick else 5)
            except RuntimeError as exc:  # an answer that is not a 200 with a result
                study = {"error": str(exc)}
        if "busy" in parts:
            loaded = under_explain_load(port, _request_bytes(port, image, "tumor", "student"), n_multi // 2,
                                        explain_workers)
    print(f"POST /predict, tumor, {len(image):,}-byte JPEG {image_path.name}; torch threads {threads} "
          f"({lone} for a lone pass), inference workers {workers}, {os.cpu_count()} CPUs; parts: {', '.join(parts)}")
    if rows:
        print(_table(rows))
    if in_process:
        print(f"predict() in this process, same runtime, {threads} thread(s) / {lone} thread(s) as a lone request: "
              + ", ".join(f"{m} {ms['per_core']:.2f} / {ms['lone']:.2f} ms" for m, ms in in_process.items()))
    if study is not None and "error" in study:
        print(f"study: {study['error']}")
    elif study is not None:
        srv = study["server_ms_p50"]
        print(f"{study['slices']}-slice dementia study (subject: {study['model']}; slices: {study['slice_model']}; "
              f"networks per slice: {' + '.join(study['networks_per_slice'])}, and the OOD detector): "
              f"{study['study_ms_p50']:.0f} ms in one request against {study['slices_one_by_one_ms_p50']:.0f} ms "
              f"for {study['compared_with']}: {study['ratio']:.2f}x (median of rounds {study['ratios']}); "
              f"server time decode + inference, study {srv['study']['decode']:.0f} + "
              f"{srv['study']['inference']:.0f} ms, singles summed {srv['slices_one_by_one']['decode']:.0f} + "
              f"{srv['slices_one_by_one']['inference']:.0f} ms")
        if study["cpu_ratio"] is not None:
            cpu = study["cpu_s_p50"]
            print(f"  the server's CPU time: study {cpu['study']:.2f} s, singles {cpu['slices_one_by_one']:.2f} s: "
                  f"{study['cpu_ratio']:.2f}x (the work; the wall-time ratio also has the study's batches side by "
                  f"side on the inference threads)")
            floor_ms = 1000 * cpu["study"] / (os.cpu_count() or 1)
            print(f"  the study's least wall time on {os.cpu_count()} cores (its CPU time spread over all of them): "
                  f"{floor_ms:.0f} ms, {floor_ms / study['slices_one_by_one_ms_p50']:.2f}x its singles' wall time")
    if loaded is not None:
        print(f"/predict student, 16 clients, {loaded['explain_workers']} explain worker(s) busy "
              f"(all busy in {100 * loaded['busy_share']:.0f}% of {loaded['busy_samples']} samples): "
              f"p50 {loaded['p50_ms']:.1f} ms, "
              f"p99 {loaded['p99_ms']:.1f} ms, {loaded['throughput_rps']:.1f} req/s, {loaded['errors']} errors")
    goals = _goals(rows, in_process, study, loaded)
    print("goals:\n  " + "\n  ".join(describe(k, v) for k, v in goals.items()))
    return {"endpoint": "POST /predict", "task": "tumor", "image_bytes": len(image), "parts": list(parts),
            "torch_threads": int(threads), "lone_threads": lone, "inference_workers": int(workers), "rows": rows,
            "predict_in_process_ms": in_process, "study": study, "under_explain_load": loaded, "goals": goals}


def _goals(rows: list[dict], in_process: dict, study: dict | None, loaded: dict | None) -> dict:
    """The absolute goals and the serving goals' ratios, for the parts that ran."""
    goals = {}
    by = {(r["model"], r["clients"]): r for r in rows}
    cores = os.cpu_count() or 1
    if in_process:
        goals["student_p50_ms_at_1 (first goal)"] = goal(by["student", 1]["p50_ms"], "<=", GOAL_P50_MS, "ms")
        goals["student_rps_at_16 (first goal)"] = goal(by["student", 16]["throughput_rps"], ">=", GOAL_RPS, "req/s")
        for model in ("student", "teacher"):
            http, lone, predict = by[model, 1]["p50_ms"], in_process[model]["lone"], in_process[model]["per_core"]
            decode = by[model, 1].get("server_decode_p50_ms")
            goals[f"{model}/p50_at_1_minus_predict"] = goal(
                http - lone, "<=", GOAL_HTTP_OVERHEAD_MS, "ms", serving="http",
                detail=f"p50 {http:.2f} ms - predict() {lone:.2f} ms as a lone request runs it; of the "
                       f"difference, the server's decode (with the head crop) p50 "
                       f"{decode if decode is not None else float('nan'):.2f} ms")
            ideal = cores * 1000 / predict
            rps = by[model, 16]["throughput_rps"]
            goals[f"{model}/rps_at_16_over_cores_x_1000_over_predict"] = goal(
                rps / ideal, ">=", GOAL_RPS_SHARE, serving="rps",
                detail=f"{rps:.1f} req/s / ({cores} x 1000 / {predict:.2f} ms = {ideal:.1f}; predict() with "
                       "one pass per core)")
    if study is not None:
        goals["study_over_its_slices_one_by_one"] = goal(
            study.get("ratio"), "<=", GOAL_STUDY_RATIO, serving="study",
            detail=(study["error"] if "error" in study else
                    f"{study['study_ms_p50']:.0f} ms / {study['slices_one_by_one_ms_p50']:.0f} ms for "
                    f"{study['compared_with']}"))
    if loaded is not None:
        idle = by["student", 16]["p99_ms"]
        goals["p99_with_explain_busy_over_idle_p99"] = goal(
            loaded["p99_ms"] / idle, "<=", GOAL_LOADED_P99_RATIO, serving="busy",
            condition=loaded["busy_share"] >= BUSY_SHARE_NEEDED,
            detail=f"{loaded['p99_ms']:.1f} / {idle:.1f} ms, student, 16 clients; "
                   f"{loaded['explain_workers']} explain worker(s) all busy in {100 * loaded['busy_share']:.0f}% "
                   f"of {loaded['busy_samples']} samples")
    goals["no_errors"] = goal(sum(r["errors"] for r in rows) + (loaded or {}).get("errors", 0), "==", 0, "errors")
    return goals


if __name__ == "__main__":
    import sys

    run(quick="--quick" in sys.argv, parts=tuple(a for a in sys.argv[1:] if a in PARTS) or None)
