"""A service process's share of the CPU: its priority (nice), the cores it may run on and its thread count, set
once at start from the settings (``DISEASEID_NICE``, ``DISEASEID_CPUS``, ``DISEASEID_TORCH_THREADS``).

Inference comes first: an explain worker lowers its priority by ``WORKER_NICE`` (nice 10 when started at 0)
unless told otherwise, so that while both have work the kernel gives the inference service's threads about nine
times the worker's CPU time (CFS weights 1024 at nice 0 against 110 at nice 10) and a burst of explain jobs cannot
starve ``/predict``; an idle inference service leaves the worker all of it. Under docker compose the containers'
``cpu_shares`` do the same across containers (docs/deploy.md). Priority and affinity are applied to the calling
thread before any thread pool exists (Linux keeps them per thread and new threads inherit them), so call this
first thing in ``main``/the lifespan.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys

log = logging.getLogger(__name__)

WORKER_NICE = 10


def parse_cpus(spec: str) -> set[int]:
    """``"0"``, ``"0,2"``, ``"1-3"`` or a mix -> the set of CPU numbers."""
    cpus: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi) if hi else int(lo)
        if first < 0 or last < first:
            raise ValueError(f"bad CPU range {part!r} in {spec!r}")
        cpus.update(range(first, last + 1))
    if not cpus:
        raise ValueError(f"no CPU in {spec!r}")
    return cpus


def apply_process_settings(settings, default_nice: int = 0) -> dict:
    """Lower this process's priority by ``settings.nice`` (else ``default_nice``; relative to how it was started,
    so ``nice -n 5 make up`` keeps the same order between the processes), set its CPU affinity (``settings.cpus``;
    empty: every CPU) and the threads of each forward pass (``DISEASEID_TORCH_THREADS``: every runtime's, torch's,
    numpy's BLAS and OpenCV's); returns what is in force, for the log.

    Torch is imported here only where it is loaded already or may serve: a process serving exported graphs
    (``DISEASEID_RUNTIME=onnxruntime`` or ``openvino``) does not import it, and should it need torch later (a
    graph that fails to load falls back to PyTorch) ``diseaseid.serving.runtime.torch_module`` applies the same
    budget then."""
    from diseaseid.serving.runtime import opencv_threads, set_thread_budget, thread_budget

    step = settings.nice if settings.nice is not None else default_nice
    if step > 0:
        os.nice(step)  # at most 19; an unprivileged process can only lower its priority
    if settings.cpus:
        available = os.sched_getaffinity(0)
        cpus = parse_cpus(settings.cpus) & available
        if not cpus:
            raise ValueError(f"DISEASEID_CPUS={settings.cpus!r} names none of this machine's CPUs "
                             f"{sorted(available)}")
        os.sched_setaffinity(0, cpus)
    graphs_only = settings.runtime in ("onnxruntime", "openvino")
    if "torch" not in sys.modules and not graphs_only and importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401  (so that set_thread_budget sets its threads now)
    set_thread_budget(settings.torch_threads)
    # numpy's BLAS too: its own pool (OpenBLAS: one thread per core) ran the OOD detector's 16 x F products of a
    # study's batch, and its threads' spinning cost a third again of the networks' CPU time on the 2-core machine
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(limits=settings.torch_threads, user_api="blas")
    blas = sorted({pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"})
    # OpenCV (the explain worker's picture resizing) keeps to it too: set_thread_budget sets it where loaded, and
    # diseaseid.serving.runtime.opencv_module on its import, which is left to the first picture (not every process
    # draws one)
    state = {"nice": os.getpriority(os.PRIO_PROCESS, 0), "cpus": sorted(os.sched_getaffinity(0)),
             "torch_threads": thread_budget(), "blas_threads": blas, "opencv_threads": opencv_threads()}
    log.info("process: nice %(nice)d, CPUs %(cpus)s, %(torch_threads)d thread(s) per forward pass, BLAS threads "
             "%(blas_threads)s, OpenCV threads %(opencv_threads)d", state)
    return state
