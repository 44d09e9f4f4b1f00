"""Print the README's table of shipped models from their model cards and the latest `make bench` results.

    .venv/bin/python scripts/model_table.py

The latency column comes from the newest bench report under bench/results/ (any folder: a partial run such
as ``python -m bench --only models --out bench/results/models`` writes its own) that has a ``models`` suite;
the robustness column from docs/robustness/<task>.json (``diseaseid robustness``), when it measured the shipped
version of the model.
"""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def latency_cell(lat: tuple[float, float | None] | None) -> str:
    if lat is None:
        return "-"
    return f"{lat[0]:.1f} ms" + ("" if lat[1] is None else f" / {lat[1]:.1f} ms")


def robustness_cell(task: str, role: str, version: str) -> str:
    """Over the realistic acquisition changes: the most answers changed and the largest accuracy drop."""
    path = ROOT / "docs" / "robustness" / f"{task}.json"
    if not path.exists():
        return "-"
    r = json.loads(path.read_text())
    if r.get("models", {}).get(role, {}).get("version") != version:
        return "not measured"
    s = r["summary"][role]
    if "held_out" in s:  # models fitted on every subject: what a new patient gets (head refitted without them)
        h = s["held_out"]
        return f"{100 * h['worst_changed']:.1f}% changed (held-out subjects)"
    return f"{100 * s['worst_changed']:.1f}% changed, -{100 * s['worst_drop']:.1f} pt"


def main() -> None:
    latency = {}
    reports = [json.loads(p.read_text()) for p in (ROOT / "bench" / "results").rglob("latest.json")]
    reports = [r for r in reports if "models" in r.get("suites", {})]
    if reports:
        newest = max(reports, key=lambda r: r["date"])
        for row in newest["suites"]["models"].get("models", []):
            latency[(row["task"], row["role"])] = (row["latency_ms_p50"], row.get("network_ms_p50"))
    print("| task | model | arch | parameters | size | val accuracy | val balanced acc. | val macro-F1 | "
          "subject bal. acc. | ECE before -> after | CPU p50: predict() / network alone | robustness: worst realistic "
          "change |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for task_dir in sorted((ROOT / "weights").iterdir()):
        for role in ("teacher", "student"):
            card_path = task_dir / f"{role}.json"
            if not card_path.exists():
                continue
            card = json.loads(card_path.read_text())
            m = card.get("metrics", {}).get("validation", {})
            cal = card.get("calibration", {})
            size = (task_dir / f"{role}.safetensors").stat().st_size / 1e6
            lat = latency.get((task_dir.name, role))
            print(f"| {task_dir.name} | {role} | {card['arch']} | {card['parameters']:,} | {size:.1f} MB | "
                  f"{pct(m.get('accuracy'))} | {pct(m.get('balanced_accuracy'))} | {pct(m.get('macro_f1'))} | "
                  f"{pct(m.get('subject_balanced_accuracy'))} | "
                  f"{pct(cal.get('ece_before'))} -> {pct(cal.get('ece_after'))} | "
                  f"{latency_cell(lat)} | {robustness_cell(task_dir.name, role, card.get('version'))} |")


if __name__ == "__main__":
    main()
