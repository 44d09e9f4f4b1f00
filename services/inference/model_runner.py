"""The inference service's models and the threads that run them.

:class:`ModelRunner` holds the process's :class:`~diseaseid.serving.ModelPool` (the same pool an explain worker
uses) and adds what an HTTP service needs around it: every task's student, teacher and subject-level head load
once, in a background thread started by the app's lifespan, so that ``/healthz`` answers at once and
``/readyz`` turns 200 when all are loaded and warmed up; a model that is missing is a 503 ``not_ready``, never
a load in the middle of a request. Decoding and forward passes run on a dedicated thread pool, never on the
event loop.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from diseaseid.serving import ModelPool, Predictor, StudyModel, all_models, warm_up_predict
from services.common.errors import NotReady
from services.inference.metrics import InferenceMetrics
from services.inference.settings import InferenceSettings

log = logging.getLogger("services.inference")
T = TypeVar("T")
A = TypeVar("A")
THREAD_PREFIX = "inference"


class ModelRunner:
    def __init__(self, settings: InferenceSettings, metrics: InferenceMetrics):
        self.settings = settings
        self.metrics = metrics
        self.pool = ModelPool(settings.torch_device(), settings.runtime)
        self.loaded = threading.Event()
        self.executor = ThreadPoolExecutor(settings.inference_workers, thread_name_prefix=THREAD_PREFIX)

    @property
    def ready(self) -> bool:
        return self.loaded.is_set() and not self.pool.failures

    @property
    def failures(self) -> dict[tuple[str, str], str]:
        return self.pool.failures

    def load_all(self) -> None:
        """Load and warm up every (task, role) and subject-level head; a failure is logged and keeps the
        service unready."""
        self.pool.preload(all_models(), warm_up=warm_up_predict, study_models=True, keep_going=True,
                          on_loaded=self._on_loaded)
        for (task, role), reason in self.pool.failures.items():
            if role == "mil":
                log.error("cannot load the subject-level model of %s: %s", task, reason)
            else:
                log.error("cannot load model %s/%s: %s", task, role, reason)
        self.loaded.set()

    def _on_loaded(self, key: tuple[str, str], predictor: Predictor, seconds: float) -> None:
        self.metrics.model_load.labels(*key).set(seconds)
        self.metrics.models_loaded.set(len(self.pool.predictors))
        log.info("loaded %s version %s in %.2f s", predictor.name, predictor.version, seconds)

    def predictor(self, task: str, role: str) -> Predictor:
        """The loaded predictor, or :class:`NotReady` (503) while loading or when it failed to load."""
        predictor = self.pool.loaded(task, role)
        if predictor is None:
            if not self.loaded.is_set():
                raise NotReady("models are still loading; retry shortly")
            raise NotReady(f"model {task}/{role} is not available on this server")
        return predictor

    def study_model(self, task: str) -> StudyModel | None:
        """The task's loaded subject-level head, if it has one and it loaded."""
        return self.pool.study_models.get(task)

    async def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Run ``fn`` on the inference thread pool and await its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def map(self, fn: Callable[[A], T], items: Iterable[A]) -> list[T]:
        """``fn`` over ``items`` side by side on the inference threads (a study's batches), results in order.
        Called from one of those threads it runs them there in turn: waiting on the pool from inside it would
        deadlock once every thread waits."""
        if threading.current_thread().name.startswith(THREAD_PREFIX):
            return [fn(item) for item in items]
        return list(self.executor.map(fn, items))

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
