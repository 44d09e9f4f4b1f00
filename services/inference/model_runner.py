"""The loaded models and the threads that run them.

Every task's student and teacher load once, in a background thread started by the app's lifespan, so that
``/healthz`` answers at once and ``/readyz`` turns 200 when all models are loaded and warmed up. Decoding
and forward passes run on a dedicated thread pool, never on the event loop.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from diseaseid.data.preprocess import IMAGE_SIZE
from diseaseid.serving import ROLES, Predictor, StudyModel, shipped_mil
from diseaseid.tasks import TASKS
from services.common.errors import NotReady
from services.inference.metrics import InferenceMetrics
from services.inference.settings import InferenceSettings

log = logging.getLogger("services.inference")
T = TypeVar("T")


class ModelStore:
    def __init__(self, settings: InferenceSettings, metrics: InferenceMetrics):
        self.settings = settings
        self.metrics = metrics
        self.predictors: dict[tuple[str, str], Predictor] = {}
        # Subject-level heads (attention MIL over the teacher's slice embeddings), for tasks that ship one.
        self.study_models: dict[str, StudyModel] = {}
        self.failures: dict[tuple[str, str], str] = {}
        self.loaded = threading.Event()
        self.executor = ThreadPoolExecutor(settings.inference_workers, thread_name_prefix="inference")

    @property
    def ready(self) -> bool:
        return self.loaded.is_set() and not self.failures

    def load_all(self) -> None:
        """Load and warm up every (task, role); a failure is logged and keeps the service unready."""
        device = self.settings.torch_device()
        blank = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        for task in TASKS:
            for role in ROLES:
                start = time.perf_counter()
                try:
                    predictor = Predictor.from_shipped(task, role, device)
                    predictor.predict(blank)  # the first forward pass is slow; pay it here
                except Exception as exc:
                    self.failures[(task, role)] = f"{type(exc).__name__}: {exc}"
                    log.error("cannot load model %s/%s: %s", task, role, self.failures[(task, role)])
                    continue
                self.predictors[(task, role)] = predictor
                seconds = time.perf_counter() - start
                self.metrics.model_load.labels(task, role).set(seconds)
                self.metrics.models_loaded.set(len(self.predictors))
                log.info("loaded %s version %s in %.2f s", predictor.name, predictor.version, seconds)
            self._load_study_model(task, blank)
        self.loaded.set()

    def _load_study_model(self, task: str, blank: np.ndarray) -> None:
        if shipped_mil(task) is None:
            return
        backbone = self.predictors.get((task, "teacher"))
        try:
            if backbone is None:
                raise RuntimeError("its backbone, the teacher, did not load")
            study = StudyModel.from_shipped(task, backbone)
            study.predict(np.repeat(blank, 2, axis=0))
        except Exception as exc:
            self.failures[(task, "mil")] = f"{type(exc).__name__}: {exc}"
            log.error("cannot load the subject-level model of %s: %s", task, self.failures[(task, "mil")])
            return
        self.study_models[task] = study
        log.info("loaded %s version %s", study.name, study.version)

    def get(self, task: str, role: str) -> Predictor:
        predictor = self.predictors.get((task, role))
        if predictor is None:
            if not self.loaded.is_set():
                raise NotReady("models are still loading; retry shortly")
            raise NotReady(f"model {task}/{role} is not available on this server")
        return predictor

    async def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """Run ``fn`` on the inference thread pool and await its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
