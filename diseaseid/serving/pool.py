"""The models a serving process holds: each shipped predictor and subject-level head, loaded once and kept.

Loading a model costs far more than one prediction or one explanation, so a process (the inference service,
an explain worker) keeps one :class:`ModelPool` and every request or job reuses its objects. The pool loads
on first use, under a lock, so two threads asking for the same model at once load it once; ``preload``
loads a list up front (and, if told, warms each model up) so no client pays for it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from diseaseid.serving.predictor import ROLES, Predictor
from diseaseid.serving.study import StudyModel, shipped_mil, study_backbone_role
from diseaseid.tasks import TASKS

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (task, role)


def all_models() -> list[Key]:
    """Every (task, role) the registry knows, in registry order."""
    return [(task, role) for task in TASKS for role in ROLES]


class ModelPool:
    """Shipped predictors by (task, role) and subject-level heads by task, on one device."""

    def __init__(self, device: str = "cpu", runtime: str | None = None):
        self.device = device
        self.runtime = runtime  # what runs the predictions (diseaseid.serving.runtime); None: $DISEASEID_RUNTIME
        self.predictors: dict[Key, Predictor] = {}
        # Subject-level heads (over their slice model's embeddings, ``study_backbone_role``), for the tasks that ship
        # one.
        self.study_models: dict[str, StudyModel] = {}
        # What failed to load in ``preload(..., keep_going=True)``: (task, role) or (task, "mil") -> reason.
        self.failures: dict[Key, str] = {}
        self._lock = threading.RLock()

    def loaded(self, task: str, role: str) -> Predictor | None:
        """The predictor if it is loaded already; never loads."""
        return self.predictors.get((task, role))

    def get(self, task: str, role: str) -> Predictor:
        """The predictor for ``task``/``role``, loading it on first use."""
        key = (task, role)
        predictor = self.predictors.get(key)
        if predictor is None:
            with self._lock:
                predictor = self.predictors.get(key)
                if predictor is None:
                    predictor = Predictor.from_shipped(task, role, self.device, self.runtime)
                    self.predictors[key] = predictor
                    log.info("loaded %s (%s) on %s, runtime %s", predictor.name, predictor.version,
                             self.device, predictor.runtime.name)
        return predictor

    def get_study_model(self, task: str) -> StudyModel | None:
        """The task's subject-level head bound to the slice model it reads (its card's backbone), loading both on
        first use; None where the task ships none."""
        study = self.study_models.get(task)
        if study is None and shipped_mil(task) is not None:
            with self._lock:
                study = self.study_models.get(task)
                if study is None:
                    study = StudyModel.from_shipped(task, self.get(task, study_backbone_role(task)))
                    if study is not None:
                        self.study_models[task] = study
                        log.info("loaded %s version %s", study.name, study.version)
        return study

    def preload(self, pairs: Iterable[Key], *, warm_up: Callable[[Predictor], object] | None = None,
                study_models: bool = False, keep_going: bool = False,
                on_loaded: Callable[[Key, Predictor, float], None] | None = None) -> list[Predictor]:
        """Load each (task, role) now, warming it up with ``warm_up``; with ``study_models`` also each task's
        subject-level head (after that task's models, since it reads one's embeddings).

        A failure raises, or with ``keep_going`` is kept in :attr:`failures` (a subject-level head
        whose slice model failed fails too). ``on_loaded((task, role), predictor, seconds)`` is told of each loaded
        model.
        """
        pairs = list(pairs)
        done: list[Predictor] = []
        for i, (task, role) in enumerate(pairs):
            start = time.perf_counter()
            try:
                predictor = self.get(task, role)
                if warm_up is not None:
                    warm_up(predictor)  # the first forward pass (or trace) is slow; pay it here
            except Exception as exc:
                if not keep_going:
                    raise
                self._failed((task, role), exc)
                predictor = None
            if predictor is not None:
                done.append(predictor)
                if on_loaded is not None:
                    on_loaded((task, role), predictor, time.perf_counter() - start)
            last_of_task = i + 1 == len(pairs) or pairs[i + 1][0] != task
            if study_models and last_of_task:
                self._preload_study_model(task, keep_going)
        return done

    def _preload_study_model(self, task: str, keep_going: bool) -> None:
        if shipped_mil(task) is None:
            return
        try:
            backbone = study_backbone_role(task)
            if (task, backbone) in self.failures:
                raise RuntimeError(f"its backbone, the {backbone}, did not load")
            study = self.get_study_model(task)
            if study is not None:
                study.predict(_blank(2))
        except Exception as exc:
            if not keep_going:
                raise
            self._failed((task, "mil"), exc)

    def _failed(self, key: Key, exc: Exception) -> None:
        # Recorded, not logged: the caller says it in its own log (and readiness names it).
        self.failures[key] = f"{type(exc).__name__}: {exc}"


def _blank(n: int = 1):
    import numpy as np

    from diseaseid.data.preprocess import IMAGE_SIZE

    return np.zeros((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)


def warm_up_predict(predictor: Predictor) -> None:
    """One prediction of a blank slice: the first forward pass is the slow one."""
    predictor.predict(_blank())
