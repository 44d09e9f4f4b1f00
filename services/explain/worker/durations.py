"""A job's stage durations, handed from the job (``explain.explain_job``) to its worker (``main.ExplainWorker``).

The worker adds them to the duration histograms (``ExplainStore.record_durations``, one Redis round trip) only
once the job's outcome is stored: the statistics are for ``/metrics``, and the client waiting for the result
should not wait for them too. Kept here, not in ``explain``, so that the worker module can import it without
loading torch before the process settings are applied.
"""
from __future__ import annotations

from collections.abc import Mapping

_pending: dict[str, dict[str, float]] = {}


def hand_over(job_id: str, seconds_by_stage: Mapping[str, float]) -> None:
    """Called by the job once its results are stored."""
    _pending[job_id] = dict(seconds_by_stage)


def take(job_id: str) -> dict[str, float] | None:
    """The job's durations, once (None when the job handed none over: it failed before its results were stored)."""
    return _pending.pop(job_id, None)
