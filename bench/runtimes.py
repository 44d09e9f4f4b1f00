"""Which runtime serves: every shipped network (normalisation + forward pass, uint8 slices in, logits and pooled
features out) under each runtime we could serve it with, timed in turn in one process, and checked against eager
PyTorch on the fixtures.

Runtimes: eager PyTorch (``torch``, what training uses), PyTorch with its weights in channels-last layout, a traced
and frozen TorchScript graph (``torch.jit.freeze``, channels-last), ``torch.compile`` (inductor; not in
``--quick``: it compiles for minutes on 2 cores), and the exported ONNX graph (``diseaseid.serving.export``) under
ONNX Runtime and OpenVINO (when installed). All use the process's torch thread count.

The served runtime's labels are also compared with eager PyTorch's on the validation split (not in ``--quick``;
``validation_labels``), as ``diseaseid evaluate --runtime`` gives them.

A runtime is correct when its logits on the fixtures are within 1e-4 of eager PyTorch's (of the largest logit
where logits run past 1), or no further than PyTorch's from the float64 logits where PyTorch's float32 ones are
that imprecise (``diseaseid.serving.export.within_tolerance``), and its labels are identical. The winner is
the correct runtime with the lowest geometric mean of batch-1 latency over the models (the median of
``RUNTIME_ROUNDS`` rounds of ``RUNTIME_BLOCK`` calls, the rounds of all runtimes interleaved, each after a pause);
the serving goal: the
served runtime (``DISEASEID_RUNTIME``, ``auto`` = ``diseaseid.serving.runtime.CPU_RUNTIME``) within 1.15x of the
fastest correct runtime for every model.
"""
from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch

from bench.goals import describe, goal
from bench.models import _time_interleaved
from diseaseid.data.dataset import ImageFolder
from diseaseid.models.checkpoint import load_model
from diseaseid.paths import fixtures_dir
from diseaseid.serving import ROLES, Predictor, shipped_weights
from diseaseid.serving.export import ServedGraph, float64_logits, logit_difference, within_tolerance
from diseaseid.serving.runtime import graph_runtime, resolve
from diseaseid.tasks import TASKS, get_task

GOAL_RATIO = 1.15
VALIDATION_CAP = 2000  # validation slices per task whose labels are compared (not in --quick)


def _torch_runner(module: torch.nn.Module):
    @torch.inference_mode()
    def run(images: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(images))[0].numpy()
    return run


def candidates(weights, quick: bool) -> tuple[dict, dict]:
    """name -> run(uint8 images) -> logits; name -> seconds it took to prepare (export, trace, compile)."""
    runs, setup = {}, {}
    model, _ = load_model(weights)
    eager = ServedGraph(model).eval()
    runs["torch"], setup["torch"] = _torch_runner(eager), 0.0

    t = time.perf_counter()
    model_cl, _ = load_model(weights)
    # the input's permute(0, 3, 1, 2) of NHWC uint8 is already a channels-last tensor
    channels_last = ServedGraph(model_cl.to(memory_format=torch.channels_last)).eval()
    runs["torch channels-last"], setup["torch channels-last"] = _torch_runner(channels_last), \
        time.perf_counter() - t

    t = time.perf_counter()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        example = torch.zeros(2, 224, 224, 3, dtype=torch.uint8)
        frozen = torch.jit.freeze(torch.jit.trace(channels_last, example, check_trace=False))
    runs["torch.jit.freeze"], setup["torch.jit.freeze"] = _torch_runner(frozen), time.perf_counter() - t

    if not quick:
        t = time.perf_counter()
        # Compiled in this process, not in inductor's pool of compile workers: the pool, started by the first
        # model's compile, slowed every contender of that model (`python -m bench --only runtimes`, 2026-12-06:
        # tumor student, batch 1, torch 12.01, ONNX Runtime 6.82, OpenVINO 5.99 ms with the pool; 8.42, 4.13 and
        # 3.92 ms with TORCHINDUCTOR_COMPILE_THREADS=1, as the same networks read called alone).
        import torch._inductor.config as inductor_config

        inductor_config.compile_threads = 1
        compiled = torch.compile(channels_last, mode="max-autotune-no-cudagraphs", dynamic=False)
        run = _torch_runner(compiled)
        run(np.zeros((1, 224, 224, 3), np.uint8))  # compiles for batch 1 here; batch 16 on its warm-up
        runs["torch.compile"], setup["torch.compile"] = run, time.perf_counter() - t

    for name in ("onnxruntime", "openvino"):
        t = time.perf_counter()
        try:
            runtime = graph_runtime(name, weights)
        except ImportError as exc:
            print(f"  {name}: not installed ({exc})")
            continue
        runs[name] = lambda images, r=runtime: r.run(images, features=True)[1]
        setup[name] = time.perf_counter() - t  # the cached graph's load (the export happens once per weights)
    return runs, setup


def validation_labels(served: str) -> dict[str, dict]:
    """task/role -> {"n", "differing"}: the served runtime's labels against eager PyTorch's on the committed
    validation split (its first VALIDATION_CAP slices), as ``diseaseid evaluate --runtime`` computes them. A task
    whose data is absent, or whose split was made from other data, is left out (said); the split is only read."""
    from diseaseid.data.splits import read_split
    from diseaseid.paths import split_path, task_data_dir

    out = {}
    for task in TASKS:
        try:
            ds = ImageFolder.scan(task_data_dir(get_task(task)), get_task(task))
            split = read_split(split_path(task))
        except (FileNotFoundError, OSError, ValueError) as exc:
            print(f"  validation labels, {task}: no data ({type(exc).__name__}: {exc})")
            continue
        if split.get("data_fingerprint") != ds.fingerprint():
            print(f"  validation labels, {task}: {split_path(task)} was made from other data; left out")
            continue
        images = ds.select(split["val"][:VALIDATION_CAP]).images
        for role in ROLES:
            try:
                path = shipped_weights(task, role)
            except FileNotFoundError:
                continue
            labels = {name: Predictor.from_weights(path, runtime=name).batched_logits(images).argmax(1)
                      for name in (served, "torch")}
            out[f"{task}/{role}"] = {"n": len(images), "differing": int((labels[served] != labels["torch"]).sum())}
            print(f"  validation labels, {task}/{role}: {out[f'{task}/{role}']['differing']} of {len(images)} differ "
                  f"between {served} and PyTorch")
    return out


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


# Calls of one runtime in a row per round (see bench.models._time_interleaved: the previous contender's
# spinning OpenMP threads otherwise land on the next one's calls). Dementia student, batch 1, quiet machine
# (/tmp script over ``candidates``): ONNX Runtime 2.40 ms called alone, 3.35 / 3.00 / 2.76 ms in blocks of
# 1 / 5 / 20; OpenVINO 2.11 alone, 4.49 / 2.67 / 2.38; torch.compile 3.00 alone, 3.27 / 3.35 / 3.39.
RUNTIME_BLOCK = 20
# Rounds of RUNTIME_BLOCK calls per runtime and model in a full run (quick: 1); a runtime's batch-1 figure is the
# median of all its calls. The least of the rounds' medians was tried (2026-12-06) against a disturbed round: the
# disturbance was the contenders' threads and inductor's compile workers (below), and once they were gone the least
# round rewarded variance (OpenVINO on the tumor student: one round at 3.40 ms, the median of all 4.06; ONNX Runtime
# 4.14 and 4.18 ms).
RUNTIME_ROUNDS = 4
# Seconds of sleep before each block of calls (and each runtime's throughput run): without it the contender before
# slowed, now and then, every call of a 20-call block, not only the first. Dementia student, batch 1, least median
# of 4 rounds of 20 (`python -m dev.runtime_interference dementia student --pauses 0 0.3 0`, three runs,
# 2026-12-06): ONNX Runtime 2.07 / 3.83 / 3.65 ms without a pause (torch 3.29-4.32), 2.07 / 2.08 / 2.07 with 0.3 s
# before each block (torch 3.26-3.42); an earlier run without it read 3.94 (`make bench` of 17:28: 3.93 ms, 1.47x
# the fastest, the served-runtime goal failed on it).
RUNTIME_PAUSE_S = 0.3
# Callers at once for the throughput column: the inference service runs min(4, cores) requests side by side
# (DISEASEID_INFERENCE_WORKERS), each pass from its own thread.
CALLERS = 4


def _throughput(fn, seconds: float, callers: int = CALLERS) -> float:
    """Batch-1 calls per second of ``fn`` with ``callers`` threads calling it at once for ``seconds``: the
    latency column says how fast one pass runs alone, this one how the runtime shares the cores when passes
    overlap, as a loaded service's do (OpenVINO, fastest alone on the development machine, served 103
    requests/s at 16 clients there against ONNX Runtime's 161)."""
    import threading

    fn()
    counts = [0] * callers
    start = threading.Barrier(callers + 1)
    stop = [0.0]

    def loop(i: int) -> None:
        start.wait()
        while time.perf_counter() < stop[0]:
            fn()
            counts[i] += 1

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(callers)]
    for t in threads:
        t.start()
    stop[0] = time.perf_counter() + seconds
    begin = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - begin)


def run(quick: bool = False) -> dict:
    repeats = 10 if quick else RUNTIME_ROUNDS * RUNTIME_BLOCK
    rng = np.random.default_rng(0)
    single = rng.integers(0, 255, (1, 224, 224, 3), dtype=np.uint8)
    batch = rng.integers(0, 255, (16, 224, 224, 3), dtype=np.uint8)
    served, _ = resolve(None, "cpu")
    rows = []
    for task in TASKS:
        fixtures = ImageFolder.scan(fixtures_dir() / task, get_task(task)).images
        for role in ROLES:
            try:
                weights = shipped_weights(task, role)
            except FileNotFoundError:
                continue
            runs, setup = candidates(weights, quick)
            reference = runs["torch"](fixtures)
            exact = float64_logits(load_model(weights)[0], fixtures)
            checks = {}
            for name, fn in runs.items():
                logits = fn(fixtures)
                checks[name] = {"max_abs_diff": float(np.abs(logits - reference).max()),
                                "relative_diff": logit_difference(logits, reference),
                                "float64_diff": float(np.abs(logits - exact).max()),
                                "within_tolerance": within_tolerance(logits, reference, exact),
                                "labels_equal": bool(np.array_equal(logits.argmax(1), reference.argmax(1))),
                                "labels_differing": int((logits.argmax(1) != reference.argmax(1)).sum()),
                                "images": len(fixtures)}
            one = _time_interleaved({name: (lambda fn=fn: fn(single)) for name, fn in runs.items()}, repeats,
                                    block=RUNTIME_BLOCK, pause_s=RUNTIME_PAUSE_S)
            sixteen = _time_interleaved({name: (lambda fn=fn: fn(batch)) for name, fn in runs.items()},
                                        max(3, repeats // 4), block=3, pause_s=RUNTIME_PAUSE_S)
            shared = {}
            for name, fn in runs.items():
                time.sleep(RUNTIME_PAUSE_S)
                shared[name] = _throughput(lambda fn=fn: fn(single), 0.5 if quick else 1.5)
            for name in runs:
                rows.append({"task": task, "role": role, "runtime": name,
                             "batch1_ms_p50": float(np.median(one[name])),
                             "batch16_ms_per_image": float(np.median(sixteen[name])) / 16,
                             f"callers{CALLERS}_per_s": shared[name],
                             "setup_s": round(setup[name], 2), **checks[name],
                             "correct": checks[name]["within_tolerance"] and checks[name]["labels_equal"]})
    validation = {} if quick else validation_labels(served)
    return _summary(rows, served, quick, validation)


def _summary(rows: list[dict], served: str, quick: bool, validation: dict | None = None) -> dict:
    models = list(dict.fromkeys((r["task"], r["role"]) for r in rows))
    names = list(dict.fromkeys(r["runtime"] for r in rows))
    by = {(r["task"], r["role"], r["runtime"]): r for r in rows}
    print(f"\nNetwork latency by runtime ({torch.get_num_threads()} threads; uint8 slices -> logits + features; "
          "correct = logits within 1e-4 of eager PyTorch on the fixtures, same labels)")
    print(f"{'model':<17} {'runtime':<20} {'batch 1 ms':>10} {'b16 ms/img':>10} {f'{CALLERS} callers/s':>11} "
          f"{'vs fastest':>10} {'max |dlogit|':>12} {'labels':>7} {'setup s':>8}")
    fastest, goals = {}, {}
    for task, role in models:
        correct = [by[(task, role, n)] for n in names if (task, role, n) in by and by[(task, role, n)]["correct"]]
        best = min(correct, key=lambda r: r["batch1_ms_p50"]) if correct else None
        fastest[f"{task}/{role}"] = best["runtime"] if best else None
        for n in names:
            r = by.get((task, role, n))
            if r is None:
                continue
            r["vs_fastest"] = r["batch1_ms_p50"] / best["batch1_ms_p50"] if best else None
            print(f"{task + '/' + role:<17} {n + ('*' if n == served else ''):<20} {r['batch1_ms_p50']:>10.2f} "
                  f"{r['batch16_ms_per_image']:>10.2f} {r.get(f'callers{CALLERS}_per_s', float('nan')):>11.1f} "
                  f"{r['vs_fastest'] or float('nan'):>9.2f}x "
                  f"{r['max_abs_diff']:>12.1e} {'same' if r['labels_equal'] else 'DIFFER':>7} {r['setup_s']:>8.1f}")
        s = by.get((task, role, served))
        goals[f"served_over_fastest:{task}/{role}"] = goal(
            s["vs_fastest"] if s and s["correct"] else None, "<=", GOAL_RATIO, serving="runtime",
            detail=(f"{served} {s['batch1_ms_p50']:.2f} ms / fastest correct {fastest[f'{task}/{role}']} "
                    f"{best['batch1_ms_p50']:.2f} ms, batch 1" if s and best else f"{served} not measured"))
        goals[f"labels_differing_from_pytorch:{task}/{role}"] = goal(
            s["labels_differing"] if s else None, "==", 0, "labels", serving="labels",
            detail=f"{served} against eager PyTorch on the {s['images'] if s else '?'} fixture slices; logits "
                   f"within tolerance: {bool(s and s['within_tolerance'])}")
        if (v := (validation or {}).get(f"{task}/{role}")) is not None:
            goals[f"validation_labels_differing_from_pytorch:{task}/{role}"] = goal(
                v["differing"], "==", 0, "labels", serving="labels",
                detail=f"{served} against eager PyTorch on {v['n']} validation slices")
    complete = [n for n in names if all((t, r, n) in by and by[(t, r, n)]["correct"] for t, r in models)]
    score = {n: _geomean([by[(t, r, n)]["batch1_ms_p50"] for t, r in models]) for n in complete}
    winner = min(score, key=score.get) if score else None
    print("geometric mean of batch-1 ms over the models: "
          + ", ".join(f"{n} {v:.2f}" for n, v in sorted(score.items(), key=lambda kv: kv[1])))
    key = f"callers{CALLERS}_per_s"
    shared = {n: _geomean([by[(t, r, n)][key] for t, r in models]) for n in complete
              if all(by[(t, r, n)].get(key) for t, r in models)}
    if shared:
        print(f"geometric mean of calls/s with {CALLERS} callers at once (as a loaded service calls): "
              + ", ".join(f"{n} {v:.0f}" for n, v in sorted(shared.items(), key=lambda kv: -kv[1])))
    print(f"winner: {winner}; served (*): {served}" + ("; torch.compile left out (--quick)" if quick else ""))
    print("goals:\n  " + "\n  ".join(describe(k, v) for k, v in goals.items()))
    return {"threads": torch.get_num_threads(), "served": served, "winner": winner, "fastest": fastest,
            "geomean_batch1_ms": score, f"geomean_callers{CALLERS}_per_s": shared, "rows": rows,
            "validation_labels": validation or {}, "goals": goals}


if __name__ == "__main__":
    import sys

    run(quick="--quick" in sys.argv)
