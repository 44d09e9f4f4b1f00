"""The explain worker's rendering against its maps, in one process, as the worker runs them (the smallest command
behind bench/explain.py's "render_over_maps" goal, without the stack: no Redis, HTTP or queue).

    nice -n 10 .venv/bin/python -m dev.render_time            # about 20 s for the tumor student

``explain_slice`` on every tumor fixture slice with each target (none, then every class), on one thread for torch,
BLAS and OpenCV as the worker's default ``DISEASEID_TORCH_THREADS=1`` sets them (services.common.process); prints
the medians of its "explain" (the maps) and "render" (overlays, panel, PNGs) stages and their ratio, which the
bench's goal wants at most 0.2. On the 2-core development machine (load about 2.8 from a training run), three runs
each, interleaved: PIL's bicubic resizing 17.2-17.5 ms render / 77-80 ms maps (0.21-0.22), OpenCV's 9.3-9.5 ms /
78-83 ms (0.12).
"""
from __future__ import annotations

import argparse
import itertools
import statistics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="tumor")
    parser.add_argument("--role", default="student")
    parser.add_argument("-n", type=int, default=60, help="explanations timed (after two warm-ups)")
    args = parser.parse_args()

    import torch  # noqa: F401  (loaded first, so that the thread budget sets its threads)
    from threadpoolctl import threadpool_limits

    from diseaseid.data.preprocess import decode_image
    from diseaseid.explain.report import explain_slice
    from diseaseid.paths import REPO_ROOT
    from diseaseid.serving import Predictor
    from diseaseid.serving.runtime import set_thread_budget

    set_thread_budget(1)
    threadpool_limits(limits=1, user_api="blas")
    predictor = Predictor.from_shipped(args.task, args.role)
    images = [decode_image(p) for p in sorted((REPO_ROOT / "tests" / "fixtures" / args.task).glob("*/*.jpg"))]
    jobs = itertools.cycle([(image, target) for target in (None, *range(len(predictor.task.classes)))
                            for image in images])
    for _ in range(2):
        image, target = next(jobs)
        explain_slice(predictor, image, target=target)
    stages: dict[str, list[float]] = {"explain": [], "render": []}
    for _ in range(args.n):
        image, target = next(jobs)
        timing = explain_slice(predictor, image, target=target).timing
        for stage, values in stages.items():
            values.append(timing[stage] * 1000)
    maps, render = (statistics.median(stages[s]) for s in ("explain", "render"))
    print(f"{args.task}/{args.role}, {args.n} explanations, median: maps {maps:.1f} ms, render {render:.2f} ms "
          f"(p10-p90 {_pct(stages['render'], 0.1):.2f}-{_pct(stages['render'], 0.9):.2f}), "
          f"render / maps {render / maps:.3f}")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


if __name__ == "__main__":
    main()
