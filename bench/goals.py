"""A benchmark goal as a number against its target, so that one run can say how far each goal is, not only
whether it was met; and the summary block that ends ``python -m bench``.

Each suite's ``run`` returns ``goals``: name -> :func:`goal` (older suites: name -> bool, shown as met or
missed without a number). The summary lists every suite's goals of the run; a suite that did not run, or a
part of one left out (``--part``), is listed as not measured, never as passed.
"""
from __future__ import annotations

import operator

OPS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq}

# The serving goals, in the order they were set: key -> (the suite that measures it, what it says). A goal of a suite
# names its key (``goal(..., serving=key)``); the summary names each key that the run did not measure.
SERVING_GOALS = {
    "runtime": ("runtimes", "served network time <= 1.15x the fastest runtime measured"),
    "labels": ("runtimes", "labels identical under the served runtime and PyTorch"),
    "predict": ("models", "predict() <= its networks + 1.5 ms"),
    "http": ("predict", "/predict p50 at 1 client <= predict() + 2 ms"),
    "rps": ("predict", "/predict req/s at 16 clients >= 0.8 x cores x 1000 / predict() ms"),
    "study": ("predict", "32-slice study over HTTP <= 0.5x its 32 single requests to the model it uses"),
    "render": ("explain", "rendering <= 20% of the maps' compute"),
    "explain": ("explain", "explain end to end <= 1.1x the worker's total"),
    "busy": ("predict", "/predict p99 with every explain worker busy <= 2x its idle p99"),
}


def goal(value: float | None, op: str, target: float, unit: str = "x", detail: str = "",
         condition: bool = True, serving: str | None = None) -> dict:
    """``value op target`` (``condition`` must hold too: e.g. the explain workers were busy); a None value (not
    measured) fails. ``serving``: the key in SERVING_GOALS of the goal this measures."""
    if serving is not None and serving not in SERVING_GOALS:
        raise KeyError(f"no serving goal {serving!r}")
    passed = value is not None and condition and bool(OPS[op](value, target))
    return {"value": None if value is None else round(float(value), 4), "op": op, "target": target, "unit": unit,
            "pass": passed, "detail": detail, "serving": serving}


def _fmt(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.3f}x"
    if unit == "share":
        return f"{100 * value:.1f}%"
    return f"{value:.2f} {unit}"


def describe(name: str, g) -> str:
    """One line: PASS/FAIL, the goal's name, its value against its target, and what it compared."""
    if isinstance(g, bool):
        return f"{'PASS' if g else 'FAIL'}  {name}"
    value = "not measured" if g["value"] is None else _fmt(g["value"], g["unit"])
    line = f"{'PASS' if g['pass'] else 'FAIL'}  {name}: {value} (goal {g['op']} {_fmt(g['target'], g['unit'])})"
    return line + (f"  [{g['detail']}]" if g.get("detail") else "")


def summary(report: dict) -> list[str]:
    """The lines of the summary block: every goal of every suite that ran, then the serving goals (SERVING_GOALS)
    that this run did not measure."""
    lines = []
    measured = set()
    for suite, result in report.get("suites", {}).items():
        if not isinstance(result, dict):
            continue
        if "error" in result:
            lines.append(f"FAIL  {suite}: the suite failed ({result['error']})")
            continue
        for name, g in (result.get("goals") or {}).items():
            lines.append(describe(f"{suite}/{name}", g))
            if isinstance(g, dict) and (g.get("serving") or g.get("issue27")):  # issue27: reports before 12-05
                measured.add(g.get("serving") or g["issue27"])
    for key, (suite, what) in SERVING_GOALS.items():
        if key not in measured:
            lines.append(f"----  not measured in this run: {what} (suite {suite})")
    passed = sum(line.startswith("PASS") for line in lines)
    failed = sum(line.startswith("FAIL") for line in lines)
    lines.append(f"{passed} passed, {failed} failed, {sum(line.startswith('----') for line in lines)} of the "
                 "serving goals not measured")
    return lines
