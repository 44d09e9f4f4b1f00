"""The shipped predictors for tests, each loaded once per test session (the ``shipped`` fixture in
tests/conftest.py hands out the same loader)."""
from __future__ import annotations

import functools


@functools.cache
def shipped_predictor(task: str, role: str = "student"):
    """The shipped ``role`` model of ``task`` (weights/), loaded once per test session and shared: a test must
    not change it (build its own ``Predictor`` for that)."""
    from diseaseid.serving import Predictor

    return Predictor.from_shipped(task, role)
