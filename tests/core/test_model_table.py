"""The README's model table (scripts/model_table.py): the study head's row takes its latency only from a report
that measured the same head, and its robustness from the whole-study run of the slice model it reads."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("model_table", REPO / "scripts" / "model_table.py")
model_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(model_table)


def _studies(root: Path, version: str) -> None:
    (root / "docs" / "robustness-studies").mkdir(parents=True)
    (root / "docs" / "robustness-studies" / "dementia.json").write_text(json.dumps({"studies": {
        "readers": {"student (study head)": {"version": version}, "teacher (study head)": {"version": "t"}},
        "summary": {"student (study head)": {"worst_changed": 0.1125}, "teacher (study head)": {"worst_changed": 0.3}},
    }}))


def test_the_study_head_row(tmp_path, monkeypatch):
    monkeypatch.setattr(model_table, "ROOT", tmp_path)
    task_dir = tmp_path / "weights" / "dementia"
    task_dir.mkdir(parents=True)
    (task_dir / "mil.safetensors").write_bytes(b"x" * 124_624)
    (task_dir / "mil.json").write_text(json.dumps({
        "arch": "pooled_head", "parameters": 31108, "version": "f90b0c2f1154",
        "backbone": {"file": "student.safetensors", "version": "40f0641f99c9"},
        "metrics": {"validation": {"balanced_accuracy": 0.4902}},
        "calibration": {"ece_before": 0.2057, "ece_after": 0.0987}}))
    assert model_table.study_row(tmp_path / "weights" / "tumor", {}) is None
    row = model_table.study_row(task_dir, {"dementia": (123.4, 32, "f90b0c2f1154")})
    assert row.startswith("| dementia | study head | pooled_head over the student | 31,108 | 0.1 MB | - | - | - | "
                          "49.0% | 20.6% -> 9.9% | 123 ms / 32 slices | ")
    assert row.endswith("| - |")  # no whole-study run yet
    _studies(tmp_path, "40f0641f99c9")
    row = model_table.study_row(task_dir, {"dementia": (123.4, 32, "2928f2866868")})  # another head's report
    assert "| not measured | 11.2% of subjects changed (whole studies, held out) |" in row
    (tmp_path / "docs" / "robustness-studies" / "dementia.json").unlink()
    (tmp_path / "docs" / "robustness-studies").rmdir()
    _studies(tmp_path, "an older student")
    assert model_table.study_row(task_dir, {}).endswith("| - | not measured |")
