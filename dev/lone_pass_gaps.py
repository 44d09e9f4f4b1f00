"""When does a lone pass's second thread pay off? One and two ONNX Runtime threads after idle gaps.

    .venv/bin/python -m dev.lone_pass_gaps        # about a minute; run it on a quiet machine

The tumor student's and teacher's served graphs, one pass at a time from a thread pool (as the inference service
calls them), with 1 and 2 intra-op threads in turn, after 0, 4, 20 and 200 ms of idle cores; median ms per pass.
2026-12-05, quiet 2-core development machine, three runs (docs/deploy.md, "A lone request gets the idle cores"):
tumor student 6.5-6.9 ms with one thread and 4.1-4.7 with two back to back, 6.7-8.3 with either after 20 ms,
7.1-8.4 after 200 ms: the second thread's wake-ups cost what it saves once the cores have been idle.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def main() -> None:
    from bench.models import slices
    from diseaseid.serving import shipped_weights
    from diseaseid.serving.export import cached_graph
    from diseaseid.serving.runtime import OnnxRuntime

    pool = ThreadPoolExecutor(1)
    for task, role in (("tumor", "student"), ("tumor", "teacher")):
        x = slices(task, 1)
        graph = cached_graph(shipped_weights(task, role))
        runtimes = {t: OnnxRuntime(graph.path, threads=t, lone_threads=0) for t in (1, 2)}
        for gap in (0.0, 0.004, 0.02, 0.2):
            times: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(30 if gap >= 0.2 else 80):
                for threads, runtime in runtimes.items():
                    if gap:
                        time.sleep(gap)
                    start = time.perf_counter()
                    pool.submit(runtime.run, x).result()
                    times[threads].append((time.perf_counter() - start) * 1000)
            print(f"{task}/{role}, {gap * 1000:.0f} ms idle: "
                  + ", ".join(f"{t} thread(s) {np.median(v[3:]):.2f} ms" for t, v in times.items()), flush=True)


if __name__ == "__main__":
    main()
