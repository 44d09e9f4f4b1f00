"""CPU latency of the shipped models: one image per call (what a service sees: ``predict()``, which also runs the
task's OOD detector model when another model answers), the answering network alone (normalisation and one
forward pass on the served runtime), the networks ``predict()`` runs (the answering one and, where another model
is the OOD detector, the detector's), and throughput at batch 16. A task's models are timed in turn, call by
call (``_time_interleaved``), on the task's first fixture slice decoded as served (:func:`slices`): an MRI slice,
as users send. Random colour noise, used here until 2026-12-05, is flagged as not an MRI by checks that take a
slower path for colour images, which a served slice never takes (tumor student: 1.55 ms over the network on
noise, 0.95 ms on the slice).

The serving goal: ``predict()`` within 1.5 ms of the networks it runs (what pre- and post-processing, the OOD
statistics and calibration add)."""
from __future__ import annotations

import time

import numpy as np
import torch

from bench.goals import describe, goal
from diseaseid.serving import ROLES, Predictor, StudyModel
from diseaseid.serving.study import study_backbone_role
from diseaseid.tasks import TASKS

# a serving goal: predict() within 1.5 ms of the networks it runs
GOAL_OVERHEAD_MS = 1.5


def _time(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _time_interleaved(fns: dict, repeats: int, block: int = 1, pause_s: float = 0.0) -> dict[str, list[float]]:
    """Milliseconds per call of each of ``fns``, called in turn (a round calls each ``block`` times in a row, in
    a rotating order), so that a noisy machine slows every contender alike: timings of one model after another
    differed by up to a third between runs on the 2-core development machine. ``block`` > 1 for contenders of
    different runtimes in one process: PyTorch's OpenMP threads spin for a while after each call, and an ONNX
    Runtime call right after one ran at about 1.8x its own time (dementia student, 4.3 against 2.3 ms); the
    median of a block's calls is the runtime's own. ``pause_s``: a sleep before each block, so that the threads of
    the contender before it (OpenMP's, TBB's, ONNX Runtime's) have gone idle. ``repeats`` calls of each in all."""
    names = list(fns)
    for name in names:  # warm-up
        fns[name]()
        fns[name]()
    out: dict[str, list[float]] = {name: [] for name in names}
    for i in range(max(1, -(-repeats // block))):
        for name in names[i % len(names):] + names[:i % len(names)]:
            if pause_s:
                time.sleep(pause_s)
            for _ in range(block):
                t = time.perf_counter()
                fns[name]()
                out[name].append((time.perf_counter() - t) * 1000)
    return out


def slices(task: str, n: int) -> np.ndarray:
    """The first ``n`` fixture slices of ``task`` (sorted by path, repeated where there are fewer), decoded as the
    services decode an upload: ``n x 224 x 224 x 3`` uint8."""
    from diseaseid.data.preprocess import decode_image
    from diseaseid.paths import fixtures_dir

    files = sorted((fixtures_dir() / task).rglob("*.jpg"))
    return np.stack([decode_image(files[i % len(files)].read_bytes()) for i in range(n)])


def run(quick: bool = False) -> dict:
    repeats = 10 if quick else 50
    rng = np.random.default_rng(0)
    results = {"threads": torch.get_num_threads(), "models": []}
    loaded: dict[tuple[str, str], Predictor] = {}
    for task in TASKS:
        batch = slices(task, 16)
        image = batch[:1]
        mine = {}
        for role in ROLES:
            try:
                mine[role] = loaded[(task, role)] = Predictor.from_shipped(task, role)
            except FileNotFoundError as exc:
                print(f"skip {task}/{role}: {exc}")
        # a task's models timed in turn, call by call, so they share the machine's state
        calls = {}
        for role, p in mine.items():
            calls[("predict", role)] = lambda p=p, x=image: p.predict(x)
            calls[("network", role)] = lambda p=p, x=image: p.runtime.run(x, features=False)
            # what predict() runs: one pass where the model is its own detector, else its own and the detector's
            calls[("networks", role)] = ((lambda p=p, x=image: p.runtime.run(x)) if p.detector is p else
                                         (lambda p=p, x=image: (p.runtime.run(x, features=False),
                                                                p.detector.runtime.run(x))))
        times = _time_interleaved(calls, repeats)
        for role, p in mine.items():
            single, network, networks = times[("predict", role)], times[("network", role)], times[("networks", role)]
            batched = _time(lambda p=p, x=batch: p.predict(x), max(3, repeats // 10))
            row = {"task": task, "role": role, "arch": p.card["arch"], "parameters": p.card.get("parameters"),
                   "latency_ms_p50": float(np.median(single)), "latency_ms_p95": float(np.percentile(single, 95)),
                   "network_ms_p50": float(np.median(network)),
                   "network_ms_p95": float(np.percentile(network, 95)),
                   "networks_ms_p50": float(np.median(networks)),
                   "ood_detector": None if p.detector is p else p.detector.name,
                   "batch16_images_per_s": 16 / (float(np.median(batched)) / 1000)}
            results["models"].append(row)
    results["studies"] = []
    stack = rng.integers(0, 255, (32, 224, 224, 3), dtype=np.uint8)
    for task in TASKS:
        role = study_backbone_role(task)
        if role is None or (task, role) not in loaded:
            continue
        study = StudyModel.from_shipped(task, loaded[(task, role)])
        times = _time(lambda s=study: s.predict(stack), max(3, repeats // 10))
        results["studies"].append({"task": task, "model": study.name, "slices": len(stack),
                                   "backbone": study.backbone.name, "latency_ms_p50": float(np.median(times))})
    print(f"\nModel CPU latency ({results['threads']} torch threads, predict() incl. pre-processing of a 224x224 "
          f"uint8 image; runtime {next(iter(loaded.values())).runtime.name if loaded else '-'}):")
    print(f"{'task':<9} {'role':<8} {'arch':<13} {'params':>9} {'p50 ms':>8} {'p95 ms':>8} {'img/s@16':>9} "
          f"{'network p50':>11} {'networks p50':>12}  OOD features from")
    for r in results["models"]:
        print(f"{r['task']:<9} {r['role']:<8} {r['arch']:<13} {r['parameters']:>9,} {r['latency_ms_p50']:>8.2f} "
              f"{r['latency_ms_p95']:>8.2f} {r['batch16_images_per_s']:>9.1f} {r['network_ms_p50']:>11.2f} "
              f"{r['networks_ms_p50']:>12.2f}  "
              f"{r['ood_detector'] or 'itself'}")
    for r in results["studies"]:
        print(f"study: {r['model']} over {r['slices']} slices ({r.get('backbone', 'teacher')} embeddings + the head): "
              f"p50 {r['latency_ms_p50']:.0f} ms")
    # a serving goal: what predict() adds to its networks (pre- and post-processing, the OOD check) stays small
    results["goals"] = {
        f"predict_minus_networks:{r['task']}/{r['role']}": goal(
            r["latency_ms_p50"] - r["networks_ms_p50"], "<=", GOAL_OVERHEAD_MS, "ms", serving="predict",
            detail=f"predict() {r['latency_ms_p50']:.2f} ms - networks {r['networks_ms_p50']:.2f} ms "
                   f"({'itself' if r['ood_detector'] is None else 'with ' + r['ood_detector']})")
        for r in results["models"]}
    print("goals:\n  " + "\n  ".join(describe(k, v) for k, v in results["goals"].items()))
    return results
