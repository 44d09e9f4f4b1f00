"""The worker's models: one :class:`~diseaseid.serving.ModelPool` per process (the inference service holds one
too), on the device the settings name.

Loading a model costs far more than explaining one slice, so a worker preloads what it serves before it
takes its first job and every job after that reuses the same objects; a model no one preloaded loads on
its first job.
"""
from __future__ import annotations

from functools import lru_cache

from diseaseid.serving import ROLES, ModelPool, all_models
from services.explain.settings import get_settings


def parse_preload(spec: str) -> list[tuple[str, str]]:
    """``"all"`` or ``"tumor/student,dementia"`` (a task alone means both roles) -> [(task, role), ...]."""
    if spec.strip() in ("", "none"):
        return []
    if spec.strip() == "all":
        return all_models()
    pairs = []
    for item in spec.split(","):
        task, _, role = item.strip().partition("/")
        pairs += [(task, r) for r in ([role] if role else ROLES)]
    return pairs


@lru_cache(maxsize=1)
def model_pool() -> ModelPool:
    """This process's models."""
    settings = get_settings()
    return ModelPool(settings.torch_device(), settings.runtime)
