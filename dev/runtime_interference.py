"""How much one runtime's calls slow the next contender's in ``bench.runtimes``: each runtime called alone, then in
interleaved rounds of ``bench.runtimes.RUNTIME_BLOCK`` calls with a given sleep before each block.

    .venv/bin/python -m dev.runtime_interference dementia student            # pauses 0 and 0.3 s, ~1 min
    .venv/bin/python -m dev.runtime_interference tumor student --compile --pauses 0.3 1.0

Printed per pause: each runtime's least median over 4 rounds of its batch-1 calls, in ms. ``--compile`` adds
``torch.compile`` (minutes). 2026-12-06 (the /tmp script this replaces, the same method), dementia student:
alone torch 3.66, torch.jit.freeze 2.78, ONNX Runtime 2.13, OpenVINO 2.01 ms; no pause 6.35, 4.82, 3.94, 2.95;
0.3 s 3.58, 2.96, 2.13, 2.03 (``RUNTIME_PAUSE_S``).
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from bench.runtimes import RUNTIME_BLOCK, candidates
from diseaseid.serving import shipped_weights

ROUNDS = 4


def block_median(fn, x: np.ndarray, calls: int = RUNTIME_BLOCK) -> float:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn(x)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("role")
    parser.add_argument("--compile", action="store_true", help="add torch.compile (minutes)")
    parser.add_argument("--pauses", type=float, nargs="+", default=[0.0, 0.3])
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    runs, _ = candidates(shipped_weights(args.task, args.role), quick=not args.compile)
    x = np.random.default_rng(0).integers(0, 255, (1, 224, 224, 3), dtype=np.uint8)
    for fn in runs.values():
        fn(x), fn(x)
    print("alone:", {name: round(block_median(fn, x), 2) for name, fn in runs.items()})
    names = list(runs)
    for pause in args.pauses:
        medians = {name: [] for name in names}
        for r in range(ROUNDS):
            for name in names[r % len(names):] + names[:r % len(names)]:
                time.sleep(pause)
                medians[name].append(block_median(runs[name], x))
        print(f"pause {pause} s:", {name: round(min(v), 2) for name, v in medians.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
