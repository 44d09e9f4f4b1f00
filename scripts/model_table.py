"""Print the README's table of shipped models from their model cards and the latest `make bench` results.

    .venv/bin/python scripts/model_table.py

The latency column comes from the newest bench report under bench/results/ (``latest.json`` of a whole run, or
``partial.json`` of one such as ``python -m bench --only models``, in any folder; never a ``--quick`` one) that
has a ``models`` suite;
the robustness column from docs/robustness/<task>.json (``diseaseid robustness``), when it measured the shipped
version of the model. A task's study head (``mil``) gets a row too: its subject-level figures from its card, the
32-slice study's latency from the same bench report, and its robustness over whole studies from
docs/robustness-studies/<task>.json (``diseaseid robustness --n 0 --studies -1``).
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


def study_robustness_cell(task: str, backbone: str, backbone_version: str) -> str:
    """Over the realistic changes, whole studies held out: the most subjects whose answer changed, for the study
    head's recipe over the slice model it reads (when that model's version was the one measured)."""
    path = ROOT / "docs" / "robustness-studies" / f"{task}.json"
    if not path.exists():
        return "-"
    st = json.loads(path.read_text()).get("studies", {})
    name = f"{backbone} (study head)"
    if st.get("readers", {}).get(name, {}).get("version") != backbone_version:
        return "not measured"
    return f"{100 * st['summary'][name]['worst_changed']:.1f}% of subjects changed (whole studies, held out)"


def study_row(task_dir: Path, study_latency: dict) -> str | None:
    card_path = task_dir / "mil.json"
    if not card_path.exists():
        return None
    card = json.loads(card_path.read_text())
    backbone = Path(card["backbone"]["file"]).stem
    cal = card.get("calibration", {})
    size = (task_dir / "mil.safetensors").stat().st_size / 1e6
    lat = study_latency.get(task_dir.name)
    if lat is None:
        lat_cell = "-"
    elif lat[2] != card.get("version"):  # the report measured another head: no row from an older model
        lat_cell = "not measured"
    else:
        lat_cell = f"{lat[0]:.0f} ms / {lat[1]} slices"
    subject = pct(card.get("metrics", {}).get("validation", {}).get("balanced_accuracy"))
    return (f"| {task_dir.name} | study head | {card['arch']} over the {backbone} | {card['parameters']:,} | "
            f"{size:.1f} MB | - | - | - | {subject} | {pct(cal.get('ece_before'))} -> {pct(cal.get('ece_after'))} | "
            f"{lat_cell} | "
            f"{study_robustness_cell(task_dir.name, backbone, card['backbone']['version'])} |")


def main() -> None:
    latency, study_latency = {}, {}
    results = ROOT / "bench" / "results"
    reports = [json.loads(p.read_text()) for name in ("latest.json", "partial.json") for p in results.rglob(name)]
    reports = [r for r in reports if "models" in r.get("suites", {})]
    if reports:
        newest = max(reports, key=lambda r: r["date"])
        for row in newest["suites"]["models"].get("models", []):
            latency[(row["task"], row["role"])] = (row["latency_ms_p50"], row.get("network_ms_p50"))
        for row in newest["suites"]["models"].get("studies", []):  # with the head version the report measured
            study_latency[row["task"]] = (row["latency_ms_p50"], row["slices"],
                                          newest.get("models", {}).get(f"{row['task']}/mil"))
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
        row = study_row(task_dir, study_latency)
        if row is not None:
            print(row)


if __name__ == "__main__":
    main()
