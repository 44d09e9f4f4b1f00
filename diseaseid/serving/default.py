"""Which shipped model answers a request that names none.

The rule (issue 12): the most accurate shipped model on its validation split, unless the student is within
``STUDENT_MARGIN`` of it, since then its speed is worth the difference. Accuracy is read from the model cards
(``metrics.validation.accuracy``), so shipping a new model changes the default without a code change.
"""
from __future__ import annotations

from dataclasses import dataclass

from diseaseid.models.checkpoint import read_card
from diseaseid.serving.predictor import ROLES, shipped_weights

STUDENT_MARGIN = 0.005  # accuracy, as a fraction: 0.5 points


@dataclass(frozen=True)
class DefaultModel:
    role: str
    reason: str


def _accuracy(card: dict) -> float | None:
    value = card.get("metrics", {}).get("validation", {}).get("accuracy")
    return float(value) if value is not None else None


def choose_default(accuracies: dict[str, float | None], margin: float = STUDENT_MARGIN) -> DefaultModel:
    """``accuracies``: role -> validation accuracy (None where a role is missing or unmeasured)."""
    known = {role: acc for role, acc in accuracies.items() if acc is not None}
    if not known:
        return DefaultModel("student", "no model card states a validation accuracy; the fast student answers")
    best = max(known, key=lambda role: (known[role], role == "student"))
    student = known.get("student")
    if student is not None and best != "student" and student >= known[best] - margin:
        return DefaultModel("student", f"the student ({student:.1%}) is within {margin:.1%} of the {best} "
                                       f"({known[best]:.1%}) and faster")
    others = ", ".join(f"{role} {acc:.1%}" for role, acc in sorted(known.items()) if role != best)
    return DefaultModel(best, f"the most accurate on validation ({known[best]:.1%}"
                              + (f"; {others}" if others else "") + ")")


def default_model(task: str) -> DefaultModel:
    """The default model of ``task`` from the shipped cards."""
    accuracies = {}
    for role in ROLES:
        try:
            accuracies[role] = _accuracy(read_card(shipped_weights(task, role)))
        except (FileNotFoundError, KeyError, ValueError):
            accuracies[role] = None
    return choose_default(accuracies)
