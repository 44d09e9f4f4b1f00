"""Which shipped model answers a request that names none.

The rule: the most accurate shipped model on its validation split, unless the student is within
``STUDENT_MARGIN`` of it, since then its speed is worth the difference; a tie goes to the student. Accuracy is
read from the model cards (``metrics.validation.accuracy``), so shipping a new model changes the default without
a code change.

The speed is real only when answering with the student skips the better model. Where that model is also the
task's OOD detector (``detector_of``: a task's detector model runs for every answer of that task), a
student answer runs both models, so it is slower and less accurate: the better model answers.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from diseaseid.cards import read_card
from diseaseid.ood.detector import detector_of
from diseaseid.serving.predictor import ROLES, shipped_weights

STUDENT_MARGIN = 0.005  # accuracy, as a fraction: 0.5 points


@dataclass(frozen=True)
class DefaultModel:
    role: str
    reason: str


def _accuracy(card: dict) -> float | None:
    value = card.get("metrics", {}).get("validation", {}).get("accuracy")
    return float(value) if value is not None else None


def choose_default(accuracies: dict[str, float | None], margin: float = STUDENT_MARGIN,
                   always_runs: str | None = None) -> DefaultModel:
    """``accuracies``: role -> validation accuracy (None where a role is missing or unmeasured).
    ``always_runs``: the role that every answer runs anyway (the task's OOD detector), if it is one of them."""
    known = {role: acc for role, acc in accuracies.items() if acc is not None}
    if not known:
        return DefaultModel("student", "no model card states a validation accuracy; the fast student answers")
    best = max(known, key=lambda role: (known[role], role == "student"))
    student = known.get("student")
    within = student is not None and best != "student" and student >= known[best] - margin
    if within and always_runs != best:
        return DefaultModel("student", f"the student ({student:.1%}) is within {margin:.1%} of the {best} "
                                       f"({known[best]:.1%}) and faster")
    tied = sorted(role for role, acc in known.items() if role != best and acc == known[best])
    if best == "student" and tied:  # a tie goes to the student, the smaller network
        return DefaultModel("student", f"as accurate on validation as the {' and the '.join(tied)} "
                                       f"({known[best]:.1%}) and smaller")
    others = ", ".join(f"{role} {acc:.1%}" for role, acc in sorted(known.items()) if role != best)
    reason = f"the most accurate on validation ({known[best]:.1%}" + (f"; {others}" if others else "") + ")"
    if within:
        reason += (f"; the student is within {margin:.1%} but not faster: the {best} runs for every answer, "
                   f"as the OOD detector")
    return DefaultModel(best, reason)


def _card_stamps(task: str) -> tuple:
    """(role, path, mtime) of each shipped card: what the default depends on, from two ``stat`` calls."""
    stamps = []
    for role in ROLES:
        try:
            card = shipped_weights(task, role).with_suffix(".json")
            stamps.append((role, str(card), card.stat().st_mtime_ns))
        except (FileNotFoundError, KeyError):
            stamps.append((role, None, None))
    return tuple(stamps)


@lru_cache(maxsize=64)
def _default_from_cards(task: str, stamps: tuple) -> DefaultModel:
    accuracies = {}
    for role, _, _ in stamps:
        try:
            accuracies[role] = _accuracy(read_card(shipped_weights(task, role)))
        except (FileNotFoundError, KeyError, ValueError):
            accuracies[role] = None
    detector_task, detector_role = detector_of(task)
    return choose_default(accuracies, always_runs=detector_role if detector_task == task else None)


def default_model(task: str) -> DefaultModel:
    """The default model of ``task`` from the shipped cards. Services ask on every request that names no
    model, before reading its upload, so the cards are read again only when one of them changed on disk (a
    refused upload used to spend a third of its time parsing two JSON files)."""
    return _default_from_cards(task, _card_stamps(task))
