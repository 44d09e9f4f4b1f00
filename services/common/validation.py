"""Checking the ``task`` and ``model`` form values against the registries (422 with the valid choices)."""
from __future__ import annotations

from diseaseid.serving import ROLES
from diseaseid.tasks import TASKS, Task
from services.common.errors import UnknownAggregation, UnknownModel, UnknownTask

# How a study's slices become one answer (see services.inference.routers.predict).
AGGREGATIONS = ("auto", "mil", "mean")

# Form values are echoed in messages only when short and printable; anything else is just "unknown".
_ECHO_MAX = 40


def _shown(value: str) -> str:
    return repr(value) if len(value) <= _ECHO_MAX and value.isprintable() else "(unprintable or too long)"


def resolve_task(name: str) -> Task:
    """The registered task called ``name``, or :class:`UnknownTask` (422) listing the known ones."""
    task = TASKS.get(name.strip())
    if task is None:
        raise UnknownTask(f"unknown task {_shown(name)}; choose one of: {', '.join(sorted(TASKS))}")
    return task


def resolve_model(role: str | None, default: str = "student") -> str:
    """``student`` or ``teacher``; empty or missing means ``default``; else :class:`UnknownModel` (422)."""
    role = (role or "").strip() or default
    if role not in ROLES:
        raise UnknownModel(f"unknown model {_shown(role)}; choose one of: {', '.join(ROLES)}")
    return role


def resolve_aggregation(value: str | None) -> str:
    """``auto``, ``mil`` or ``mean``; empty or missing means ``auto``; else :class:`UnknownAggregation` (422)."""
    value = (value or "").strip() or "auto"
    if value not in AGGREGATIONS:
        raise UnknownAggregation(f"unknown aggregate {_shown(value)}; choose one of: {', '.join(AGGREGATIONS)}")
    return value
