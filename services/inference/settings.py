"""Inference-service settings: the shared ``DISEASEID_*`` ones plus

- ``DISEASEID_DEFAULT_MODEL`` and ``DISEASEID_DEFAULT_MODELS`` (JSON per task, e.g.
  ``{"dementia": "teacher"}``): which model answers when a request names none; unset (or ``auto``), the most
  accurate shipped model unless the student is within 0.5 points of it and faster to serve
  (``diseaseid.serving.default``);
- ``DISEASEID_MAX_STUDY_FILES`` (64) and ``DISEASEID_MAX_STUDY_BYTES`` (whole ``/predict/study`` body);
- ``DISEASEID_INFERENCE_WORKERS``: threads running decode + forward passes (off the event loop);
- ``DISEASEID_LONE_THREADS``: intra-op threads of a forward pass that starts while no other pass is in flight
  (ONNX Runtime; ``diseaseid.serving.runtime.set_lone_budget``): 0 (default) for the CPUs this process may use, at
  most 4; 1, or not above ``DISEASEID_TORCH_THREADS``, for none (every pass keeps ``DISEASEID_TORCH_THREADS``).
"""
from __future__ import annotations

import os
from functools import lru_cache

from pydantic import Field

from diseaseid.serving import ROLES, DefaultModel, default_model
from diseaseid.serving.runtime import usable_cpus
from services.common.settings import MB, ServiceSettings

# Measured on 2 cores only (diseaseid.serving.runtime); more threads than this for one small network's pass are
# unmeasured, so a bigger machine keeps to 4 unless told otherwise.
LONE_THREADS_MAX = 4


class InferenceSettings(ServiceSettings):
    default_model: str = "auto"
    default_models: dict[str, str] = Field(default_factory=dict)
    max_study_files: int = Field(64, ge=1)
    max_study_bytes: int = Field(256 * MB, ge=1)
    # One thread per core: each forward pass uses torch_threads intra-op threads.
    inference_workers: int = Field(default_factory=lambda: min(4, os.cpu_count() or 1), ge=1)
    # A lone request gets the idle cores: 0 = this process's CPUs (after DISEASEID_CPUS), at most LONE_THREADS_MAX.
    lone_threads: int = Field(0, ge=0)

    def lone_pass_threads(self) -> int:
        """``lone_threads``, or for 0 the CPUs this process may use (call after its affinity is set), at most
        :data:`LONE_THREADS_MAX`."""
        if self.lone_threads:
            return self.lone_threads
        return min(usable_cpus(), LONE_THREADS_MAX)

    def default_model_for(self, task: str) -> str:
        return self.default_choice(task).role

    def default_choice(self, task: str) -> DefaultModel:
        """The role that answers requests naming none, and why."""
        role = self.default_models.get(task, self.default_model)
        if role in ROLES:
            return DefaultModel(role, "set by DISEASEID_DEFAULT_MODEL(S)")
        return default_model(task)


@lru_cache(maxsize=1)
def get_settings() -> InferenceSettings:
    """The settings read from the environment, once per process."""
    return InferenceSettings()
