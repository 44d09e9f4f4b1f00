"""Form values, checked one way for every endpoint: 422 with the valid choices, never a 500.

Every text value a route takes from a form goes through :func:`form_text` first: missing means empty,
surrounding white space goes, and a value that is too long or holds control characters is refused before
anything else looks at it. On top of that:

- :func:`resolve_task`, :func:`resolve_model`, :func:`resolve_aggregation`: a name from a fixed list;
- :func:`role_field`: the model's role from ``role``, or from ``model``, its deprecated old name;
- a class named by index or name (``target``): ``diseaseid.tasks.Task.class_index``, which reads ASCII
  digits only (``"²"`` and ``"①"`` pass ``str.isdigit`` but not ``int()``; 4,301 digits fail ``int()`` too);
- :func:`reject_repeated_fields`: a field that takes one value (``file`` on ``/predict`` and
  ``/explain``, ``task``, ``model``, ...) sent twice is a 400, on every endpoint alike.
"""
from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import FormData

from diseaseid.paths import ROLES
from diseaseid.tasks import TASKS, Task
from services.common.errors import (
    InvalidFormValue,
    MalformedRequest,
    ServiceError,
    UnknownAggregation,
    UnknownModel,
    UnknownTask,
)

# How a study's slices become one answer (see services.inference.routers.predict).
AGGREGATIONS = ("auto", "mil", "mean")

# No legitimate value of any of our fields is longer (class names, lists of methods).
MAX_FORM_CHARS = 200
# Form values are echoed in messages only when short and printable; anything else is just "unknown".
_ECHO_MAX = 40


def _shown(value: str) -> str:
    return repr(value) if len(value) <= _ECHO_MAX and value.isprintable() else "(unprintable or too long)"


def form_text(value: str | None, field: str, *, max_chars: int = MAX_FORM_CHARS,
              error: type[ServiceError] = InvalidFormValue) -> str:
    """The value without surrounding white space ("" when missing); ``error`` (422) when it is longer
    than ``max_chars`` or holds a control character."""
    if value is None:
        return ""
    if not isinstance(value, str):  # an uploaded file where a text field belongs
        raise MalformedRequest(f"field {field!r} must be a text value, not a file")
    if len(value) > max_chars:
        raise error(f"field {field!r} is over {max_chars} characters")
    value = value.strip()
    if not value.isprintable():
        raise error(f"field {field!r} holds control or unprintable characters")
    return value


def resolve_task(name: str | None) -> Task:
    """The registered task called ``name``, or :class:`UnknownTask` (422) listing the known ones."""
    choices = ", ".join(sorted(TASKS))
    value = form_text(name, "task", error=UnknownTask)
    task = TASKS.get(value)
    if task is None:
        raise UnknownTask(f"unknown task {_shown(value)}; choose one of: {choices}")
    return task


def resolve_model(role: str | None, default: str = "student") -> str:
    """``student`` or ``teacher``; empty or missing means ``default``; else :class:`UnknownModel` (422)."""
    role = form_text(role, "model", error=UnknownModel) or default
    if role not in ROLES:
        raise UnknownModel(f"unknown model {_shown(role)}; choose one of: {', '.join(ROLES)}")
    return role


def role_field(role: str | None, model: str | None) -> str | None:
    """What names the model's role (student or teacher): the ``role`` field, or ``model``, its deprecated old
    name, which clients written before ``role`` still send; None when neither is sent. Both, with different
    values: :class:`MalformedRequest` (400), since it is not clear which one is meant."""
    new = form_text(role, "role", error=UnknownModel)
    old = form_text(model, "model", error=UnknownModel)
    if new and old and new != old:
        raise MalformedRequest(f"fields 'role' ({_shown(new)}) and 'model' ({_shown(old)}) differ; send 'role' "
                               "only ('model' is its deprecated old name)")
    return new or old or None


def resolve_aggregation(value: str | None) -> str:
    """``auto``, ``mil`` or ``mean``; empty or missing means ``auto``; else :class:`UnknownAggregation` (422)."""
    value = form_text(value, "aggregate", error=UnknownAggregation) or "auto"
    if value not in AGGREGATIONS:
        raise UnknownAggregation(f"unknown aggregate {_shown(value)}; choose one of: {', '.join(AGGREGATIONS)}")
    return value


def reject_repeated_fields(form: FormData, multiple: Iterable[str] = ()) -> None:
    """:class:`MalformedRequest` (400) when a field that takes one value was sent more than once.

    ``multiple`` names the fields that may repeat (``files`` of a study, ``methods``)."""
    allowed = set(multiple)
    seen: dict[str, int] = {}
    for key, _ in form.multi_items():
        seen[key] = seen.get(key, 0) + 1
    repeated = sorted(k for k, n in seen.items() if n > 1 and k not in allowed)
    if repeated:
        shown = ", ".join(_shown(k) for k in repeated[:3])
        raise MalformedRequest(f"field {shown} was sent more than once; send it once")
