"""The worker's loaded models: one ``Predictor`` per (task, role), loaded once per process and kept.

Loading a model costs far more than explaining one slice, so a worker preloads what it serves before it
takes its first job and every job after that reuses the same objects.
"""
from __future__ import annotations

import logging
import threading

from diseaseid.serving import ROLES, Predictor
from diseaseid.tasks import TASKS

log = logging.getLogger(__name__)

_predictors: dict[tuple[str, str], Predictor] = {}
_lock = threading.Lock()


def parse_preload(spec: str) -> list[tuple[str, str]]:
    """``"all"`` or ``"tumor/student,dementia"`` (a task alone means both roles) -> [(task, role), ...]."""
    if spec.strip() in ("", "none"):
        return []
    if spec.strip() == "all":
        return [(t, r) for t in TASKS for r in ROLES]
    pairs = []
    for item in spec.split(","):
        task, _, role = item.strip().partition("/")
        pairs += [(task, r) for r in ([role] if role else ROLES)]
    return pairs


def get_predictor(task: str, role: str, device: str = "cpu") -> Predictor:
    """The process-wide predictor for ``task``/``role``, loading it on first use."""
    key = (task, role)
    predictor = _predictors.get(key)
    if predictor is None:
        with _lock:
            predictor = _predictors.get(key)
            if predictor is None:
                predictor = Predictor.from_shipped(task, role, device)
                _predictors[key] = predictor
                log.info("loaded %s (%s) on %s", predictor.name, predictor.version, predictor.device)
    return predictor


def preload(pairs: list[tuple[str, str]], device: str = "cpu") -> list[Predictor]:
    return [get_predictor(task, role, device) for task, role in pairs]
