"""Inference first: an explain worker runs below the inference service's priority, and a process keeps to the CPUs
and threads its settings name (services.common.process)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.process import WORKER_NICE, parse_cpus
from tests.services.explain_stack import ExplainStack

REPO = Path(__file__).resolve().parents[2]


def nice_of(pid: int) -> int:
    """Field 19 of /proc/<pid>/stat: the process's nice value."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_cpu_lists():
    assert parse_cpus("0") == {0}
    assert parse_cpus("0,2") == {0, 2}
    assert parse_cpus("1-3, 5") == {1, 2, 3, 5}
    for bad in ("", ",", "3-1", "-1", "a"):
        with pytest.raises(ValueError):
            parse_cpus(bad)


def applied(env: dict[str, str], default_nice: int, before: str = "pass") -> dict:
    """apply_process_settings in a fresh process (niceness cannot be lowered again), with ``env``, after ``before``;
    and OpenCV's threads and the BLAS pools' (its wheel brings an OpenBLAS) once the pictures' code has imported it
    (``opencv_on_import``, ``blas_on_import``)."""
    code = (f"{before}; import json; from services.common.process import apply_process_settings; "
            "from services.common.settings import ServiceSettings; "
            f"state = apply_process_settings(ServiceSettings(), default_nice={default_nice}); "
            "from diseaseid.serving.runtime import opencv_module; from threadpoolctl import threadpool_info; "
            "threads = opencv_module().getNumThreads(); "
            "blas = sorted({p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'}); "
            "print(json.dumps({**state, 'opencv_on_import': threads, 'blas_on_import': blas}))")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DISEASEID_")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**clean, **env}, capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


BASE = os.getpriority(os.PRIO_PROCESS, 0)  # the tests may run under `nice`: priorities are relative to it


def test_settings_set_priority_cpus_and_threads():
    cpus = sorted(os.sched_getaffinity(0))
    got = applied({"DISEASEID_CPUS": str(cpus[-1]), "DISEASEID_TORCH_THREADS": "1"}, default_nice=WORKER_NICE)
    assert got == {"nice": min(19, BASE + WORKER_NICE), "cpus": [cpus[-1]], "torch_threads": 1, "blas_threads": [1],
                   "opencv_threads": 1, "opencv_on_import": 1, "blas_on_import": [1]}
    # the setting wins; numpy's BLAS pool keeps to the same budget, and so does OpenCV loaded before with others
    got = applied({"DISEASEID_NICE": "3", "DISEASEID_TORCH_THREADS": "2"}, default_nice=WORKER_NICE,
                  before="import cv2; cv2.setNumThreads(5)")
    assert got == {"nice": min(19, BASE + 3), "cpus": cpus, "torch_threads": 2, "blas_threads": [2],
                   "opencv_threads": 2, "opencv_on_import": 2, "blas_on_import": [2]}
    # OpenCV imported after the budget is set, on every CPU: its own default would be a thread per CPU, and as many
    # for its OpenBLAS
    got = applied({"DISEASEID_TORCH_THREADS": "1"}, default_nice=0)
    assert (got["opencv_threads"], got["opencv_on_import"], got["blas_on_import"]) == (1, 1, [1])


def test_opencv_keeps_to_the_thread_budget_set_before_or_after_its_import(monkeypatch):
    """The explain worker's pictures: OpenCV loaded when the budget is set takes it at once; loaded later (by the
    first picture: its own default is a thread per CPU, which the subprocess above cannot tell from the budget on
    a machine of one or two CPUs) it takes it from ``opencv_module``."""
    import cv2
    import torch
    from threadpoolctl import threadpool_limits

    from diseaseid.serving import runtime

    monkeypatch.setattr(runtime, "_budget", None)
    saved = cv2.getNumThreads(), torch.get_num_threads()
    try:
        with threadpool_limits(limits=None, user_api="blas"):  # gives the BLAS pools their threads back after
            cv2.setNumThreads(5)
            runtime.set_thread_budget(1)
            assert cv2.getNumThreads() == 1
            cv2.setNumThreads(5)  # as a fresh import would have it
            assert runtime.opencv_module().getNumThreads() == 1
    finally:
        cv2.setNumThreads(saved[0])
        torch.set_num_threads(saved[1])


def test_an_explain_worker_runs_below_the_inference_service(inference_server):
    stack = ExplainStack.start(DISEASEID_EXPLAIN_PRELOAD="none", DISEASEID_EXPLAIN_WARMUP="false")
    try:
        worker = stack.start_worker()
        assert nice_of(worker.proc.pid) == min(19, BASE + WORKER_NICE)
        assert nice_of(stack.api.proc.pid) == BASE  # the explain API takes uploads: not lowered
        assert nice_of(inference_server.proc.pid) == BASE
    finally:
        stack.close()
