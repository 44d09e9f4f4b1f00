"""What runs a served model's network: eager PyTorch, or its exported graph (``diseaseid.serving.export``) under
ONNX Runtime or OpenVINO. Explanations and training always use the PyTorch model: they need autograd.

Every runtime answers ``run(images, features)``: N x 224 x 224 x 3 uint8 -> (N x F pooled penultimate features,
or None when not asked for; N x C logits), float32 numpy arrays, one pass.

Which runtime serves: ``DISEASEID_RUNTIME`` (``auto``, ``torch``, ``onnxruntime`` or ``openvino``). ``auto`` is
``CPU_RUNTIME`` on a CPU, chosen by ``python -m bench --only runtimes`` (the fastest runtime whose logits equal
PyTorch's within 1e-4), and PyTorch on a GPU (scripts/bench_gpu.sh measures the GPU runtimes). Under ``auto`` a
runtime that cannot load (not installed, or its export refused) falls back to PyTorch with an error in the log;
a runtime named explicitly raises instead.

Threads: a runtime uses ``thread_budget()`` intra-op threads (the services set it from ``DISEASEID_TORCH_THREADS``
before loading, with ``set_thread_budget``; else torch's thread count), so every runtime of a process keeps to the
same budget. A process that also sets a *lone-pass* budget (``set_lone_budget``: the inference service, from
``DISEASEID_LONE_THREADS``, by default its CPUs) gives a pass that starts while no other pass of the process is in
flight that many threads under ONNX Runtime (a second session of the same graph): a lone request has the idle
cores to itself, requests side by side keep one budget each. On the 2-core development machine (quiet, passes
from a thread pool 4 ms apart, /tmp script, 150 of each): tumor student 6.73 ms with 1 thread, 4.28 ms with 2;
tumor teacher 9.12 and 5.80 ms; the dementia student 4.17 and 4.04 ms. The gain is for passes that follow each
other closely (a series sent slice after slice): after 20 ms or more of idle cores, the second thread's wake-ups
cost what it saves (both about 7-8 ms for the tumor student; ``python -m dev.lone_pass_gaps``; docs/deploy.md,
"A lone request gets the idle cores").

Torch is imported only by what needs it (the PyTorch runtime, a graph's first export, a fallback): a process
serving exported graphs whose graphs are cached never imports it (the inference service's torch-free image).
"""
from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnxruntime", "openvino")
# What serves on a CPU. `python -m bench --only runtimes` times every runtime alone (batch-1 latency) and with 4
# callers at once (as the loaded inference service calls). On the quiet 2-core development machine (2026-12-05,
# --quick) OpenVINO was fastest alone (geometric mean over the four shipped networks 3.97 ms, ONNX Runtime 4.57),
# but ONNX Runtime shared the cores better (272 calls/s against OpenVINO's 240), and behind the service it gave
# 161 / 90 requests/s at 16 clients (tumor student / teacher) against OpenVINO's 103 / 52 (bench --only predict
# --part load, DISEASEID_RUNTIME set, same machine, same hour): ONNX Runtime serves. Both are within 1e-4 of
# eager PyTorch's logits with the same labels. Rerun both on a quiet machine before changing this.
CPU_RUNTIME = "onnxruntime"
ENV = "DISEASEID_RUNTIME"


class Runtime(Protocol):
    name: str

    def run(self, images: np.ndarray, features: bool = True) -> tuple[np.ndarray | None, np.ndarray]: ...

    def describe(self) -> dict: ...


_budget: int | None = None


def set_thread_budget(threads: int) -> None:
    """Intra-op threads for every runtime of this process (and torch's and OpenCV's, where loaded already; a later
    import of either by our code takes it too: ``torch_module``, ``opencv_module``)."""
    global _budget
    _budget = max(1, int(threads))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(_budget)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(_budget)


_lone_budget: int | None = None


def set_lone_budget(threads: int | None) -> None:
    """Intra-op threads of an ONNX Runtime pass that starts while no other pass of this process is in flight
    (None, or not above ``thread_budget()``: none; every pass keeps the thread budget). Set before the runtimes
    load: a runtime made after this holds a second session with this many threads."""
    global _lone_budget
    _lone_budget = None if threads is None else max(1, int(threads))


def lone_budget() -> int | None:
    """The lone-pass threads set by ``set_lone_budget`` where above the thread budget, else None."""
    return _lone_budget if _lone_budget is not None and _lone_budget > thread_budget() else None


class _Passes:
    """How many graph passes of this process are in flight (every model, every runtime that asks)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.in_flight = 0

    @contextmanager
    def enter(self) -> Iterator[bool]:
        """Counts a pass while it runs; yields whether it started alone."""
        with self._lock:
            alone = self.in_flight == 0
            self.in_flight += 1
        try:
            yield alone
        finally:
            with self._lock:
                self.in_flight -= 1


PASSES = _Passes()


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def thread_budget() -> int:
    """The budget set by ``set_thread_budget``, else torch's thread count where torch is loaded, else the CPUs."""
    if _budget is not None:
        return _budget
    if "torch" in sys.modules:
        return sys.modules["torch"].get_num_threads()
    return usable_cpus()


def torch_module():
    """``import torch``, keeping to the thread budget when one was set: the serving code imports torch only
    through here, and only when it needs it."""
    import torch

    if _budget is not None and torch.get_num_threads() != _budget:
        torch.set_num_threads(_budget)
    return torch


def opencv_module():
    """``import cv2`` (the explanation pictures' resizing, ``diseaseid.explain.render``), keeping to the thread
    budget when one was set, as ``torch_module`` does: OpenCV's own pool otherwise has a thread per core, and so
    has the OpenBLAS its wheel brings (the resizing never calls it; held to the budget as numpy's is,
    services.common.process). Imported on first use: 15-19 ms and 14 MB that a process drawing no picture (the
    inference service) does without."""
    import cv2

    if _budget is not None:
        from threadpoolctl import threadpool_limits

        cv2.setNumThreads(_budget)
        threadpool_limits(limits=_budget, user_api="blas")
    return cv2


def opencv_threads() -> int:
    """OpenCV's threads: what it has where loaded, else what ``opencv_module`` will give it."""
    if "cv2" in sys.modules:
        return sys.modules["cv2"].getNumThreads()
    return _budget if _budget is not None else usable_cpus()


def device_type(device) -> str:
    """``"cpu"``, ``"cuda"``, ... of a device name or a ``torch.device``, without importing torch."""
    return str(getattr(device, "type", device)).split(":")[0]


def runtime_setting() -> str:
    """``$DISEASEID_RUNTIME``, else ``auto``."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value != "auto" and value not in RUNTIMES:
        raise ValueError(f"{ENV}={value!r}: choose auto or one of {', '.join(RUNTIMES)}")
    return value


def resolve(name: str | None, device="cpu") -> tuple[str, bool]:
    """(runtime, named): ``name`` (None: the setting); ``auto`` -> the device's default. ``named`` says whether
    it was asked for by name (then a failure to load raises rather than falling back to PyTorch)."""
    name = (name or runtime_setting()).lower()
    if name == "auto":
        return ("torch" if device_type(device) != "cpu" else CPU_RUNTIME), False
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}; choose auto or one of {', '.join(RUNTIMES)}")
    return name, True


def _images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.dtype != np.uint8:
        raise TypeError(f"a served graph takes uint8 images, not {images.dtype}")
    return np.ascontiguousarray(images)


class TorchRuntime:
    """Eager PyTorch: ``normalize`` and the model, as in training."""

    name = "torch"

    def __init__(self, model, device="cpu"):
        self.torch = torch_module()
        self.model = model
        self.device = self.torch.device(device)

    def run(self, images: np.ndarray, features: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
        from diseaseid.data.tensors import normalize
        from diseaseid.ood.features import features_and_logits

        with self.torch.inference_mode():
            if features:
                return features_and_logits(self.model, images, self.device, batch_size=max(1, len(images)))
            return None, self.model(normalize(images, self.device)).float().cpu().numpy()

    def describe(self) -> dict:
        return {"runtime": self.name, "device": str(self.device), "threads": self.torch.get_num_threads()}


class OnnxRuntime:
    """The exported graph under ONNX Runtime (CPU, or CUDA where ``onnxruntime-gpu`` offers it). One session per
    model; ``InferenceSession.run`` is safe to call from several threads at once."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, device="cpu", graph_sha256: str | None = None,
                 outputs: tuple[str, ...] = ("logits", "features"), lone_threads: int | None = None):
        """``lone_threads``: the threads of a pass that starts alone (``PASSES``), in a second session; None:
        ``lone_budget()`` for a slice network on the CPU (a subject head's graph, ``outputs`` other than the
        default, keeps one session)."""
        import onnxruntime as ort

        self.path, self.graph_sha256, self.outputs = Path(path), graph_sha256, list(outputs)
        self.threads = threads or thread_budget()
        providers = ["CPUExecutionProvider"]
        if device_type(device) == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError("this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
            providers.insert(0, "CUDAExecutionProvider")
        self.session = self._session(ort, self.threads, providers)
        if lone_threads is None and providers == ["CPUExecutionProvider"] and self.outputs == ["logits", "features"]:
            lone_threads = lone_budget()
        self.lone_threads = lone_threads if lone_threads and lone_threads > self.threads else None
        self.lone_session = self._session(ort, self.lone_threads, providers) if self.lone_threads else None
        self.input = self.session.get_inputs()[0].name

    def _session(self, ort, threads: int, providers: list[str]):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads would spin on the cores the explain workers and the other requests need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(self.path), options, providers=providers)

    def run(self, images: np.ndarray, features: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
        images = _images(images)
        with PASSES.enter() as alone:
            session = self.lone_session if alone and self.lone_session is not None else self.session
            logits, feats = session.run(self.outputs, {self.input: images})
        return (feats if features else None), logits

    def run_arrays(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Every output of the graph for named inputs (a subject-level head's graph); inputs the graph does not
        take (the exporter drops an unused one) are left out."""
        names = {i.name for i in self.session.get_inputs()}
        return self.session.run(self.outputs, {k: v for k, v in inputs.items() if k in names})

    def describe(self) -> dict:
        out = {"runtime": self.name, "providers": self.session.get_providers(), "threads": self.threads,
               "graph_sha256": self.graph_sha256}
        if self.lone_threads:
            out["lone_threads"] = self.lone_threads
        return out


class OpenVinoRuntime:
    """The exported graph under OpenVINO on the CPU, in float32 (its default on CPUs with bf16 units is bf16,
    which moved logits by 1e-2). An infer request serves one call at a time: each call takes a free one. The
    outputs are read by name, as ONNX Runtime's are (a slice network's ``logits`` and ``features``, a subject
    head's ``logits`` and ``attention``); a graph with a dynamic dimension (a head's slice count) is compiled
    once for every size."""

    name = "openvino"

    def __init__(self, path: str | Path, threads: int | None = None, graph_sha256: str | None = None,
                 outputs: tuple[str, ...] = ("logits", "features")):
        import openvino as ov

        self.path, self.graph_sha256, self.outputs = Path(path), graph_sha256, list(outputs)
        self.threads = threads or thread_budget()
        self.compiled = ov.Core().compile_model(str(self.path), "CPU", {
            "INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32"})
        self.inputs = {port.get_any_name() for port in self.compiled.inputs}
        self.ports = [self.compiled.output(name) for name in self.outputs]
        self.requests: queue.SimpleQueue = queue.SimpleQueue()

    def _infer(self, inputs: dict) -> list[np.ndarray]:
        try:
            request = self.requests.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            result = request.infer(inputs)
            # copies: the request's output tensors are overwritten by its next call
            return [np.array(result[port], np.float32) for port in self.ports]
        finally:
            self.requests.put(request)

    def run(self, images: np.ndarray, features: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
        logits, feats = self._infer({0: _images(images)})[:2]
        return (feats if features else None), logits

    def run_arrays(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Every output of the graph for named inputs (a subject-level head's graph); inputs the graph does not
        take (the exporter drops an unused one) are left out."""
        return self._infer({k: v for k, v in inputs.items() if k in self.inputs})

    def describe(self) -> dict:
        return {"runtime": self.name, "device": "CPU", "threads": self.threads, "graph_sha256": self.graph_sha256}


def head_runtime(name: str, path: str | Path, device="cpu", graph_sha256: str | None = None,
                 outputs: tuple[str, ...] = ("logits", "attention")) -> Runtime:
    """A subject-level head's exported graph (``path``) under the graph runtime ``name`` that serves its
    backbone (ONNX Runtime for any other name)."""
    if name == "openvino" and device_type(device) == "cpu":
        return OpenVinoRuntime(path, graph_sha256=graph_sha256, outputs=outputs)
    return OnnxRuntime(path, device=device, graph_sha256=graph_sha256, outputs=outputs)


def graph_runtime(name: str, weights: str | Path, device="cpu", weights_sha256: str | None = None,
                  threads: int | None = None) -> Runtime:
    """``name`` (onnxruntime | openvino) over the cached graph of ``weights`` (exported on first use)."""
    from diseaseid.serving.export import cached_graph

    graph = cached_graph(weights, weights_sha256)
    if name == "onnxruntime":
        return OnnxRuntime(graph.path, threads, device, graph.sha256)
    if name == "openvino":
        if device_type(device) != "cpu":
            raise RuntimeError("the openvino runtime runs on the CPU only")
        return OpenVinoRuntime(graph.path, threads, graph.sha256)
    raise ValueError(f"{name!r} runs no exported graph")


def load_runtime(name: str | None, weights: str | Path, model, device="cpu",
                 weights_sha256: str | None = None) -> Runtime:
    """The runtime ``name`` (None: the setting) for the shipped ``weights`` whose PyTorch model is ``model``, or a
    callable that loads it (called only where PyTorch runs it: a graph runtime never loads the PyTorch model)."""
    name, named = resolve(name, device)
    if name == "torch":
        return TorchRuntime(_model(model), device)
    try:
        return graph_runtime(name, weights, device, weights_sha256)
    except Exception as exc:
        if named:
            raise
        log.error("runtime %s failed for %s (%s: %s); serving it with PyTorch", name, weights,
                  type(exc).__name__, exc)
        return TorchRuntime(_model(model), device)


def _model(model: Callable):
    """The PyTorch model, loading it first where ``model`` is its loader (a module is callable too, hence the
    test for its parameters)."""
    return model if hasattr(model, "parameters") else model()
