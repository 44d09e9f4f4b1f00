"""``diseaseid explain`` and ``diseaseid predict`` name no class and show no percentage for an image
without a diagnosis (white text on black: not a brain MRI slice), and still do for a slice."""
from __future__ import annotations

import json
import re

import pytest

from diseaseid.cli import main
from diseaseid.ood.images import text_on_black
from diseaseid.tasks import get_task
from tests.helpers import png_bytes

TUMOR = get_task("tumor")


@pytest.fixture(scope="module")
def not_mri(tmp_path_factory):
    path = tmp_path_factory.mktemp("flagged") / "notes.png"
    path.write_bytes(png_bytes(text_on_black()))
    return path


def class_words() -> list[str]:
    return [w.lower() for i, c in enumerate(TUMOR.classes) for w in (c, TUMOR.display(i, "en"))]


def test_explain_names_no_class_for_a_flagged_image(not_mri, tmp_path, capsys):
    assert main(["explain", str(not_mri), "--task", "tumor", "--model", "student", "--method", "gradcam",
                 "--out", str(tmp_path)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["outcome"] == "not_a_brain_mri"
    assert line["prediction"] is None and line["explained"] is None and line["probability"] is None


def test_predict_prints_no_class_and_no_percentage_for_a_flagged_image(not_mri, capsys):
    assert main(["predict", str(not_mri), "--task", "tumor", "--model", "student"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Not a brain MRI slice: no diagnosis  [tumor/student:")
    assert "%" not in out and not any(w in out.lower() for w in class_words())


def test_predict_prints_each_class_with_a_bounded_percentage(fixtures_dir, capsys):
    image = sorted((fixtures_dir / "tumor" / "glioma").glob("*.jpg"))[0]
    assert main(["predict", str(image), "--task", "tumor", "--model", "student", "--json"]) == 0
    probs = json.loads(capsys.readouterr().out)["probabilities"]
    assert main(["predict", str(image), "--task", "tumor", "--model", "student"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    from diseaseid.percent import percent

    shown = {m.group(1): m.group(2) for m in (re.match(r"\s+(\w+)\s+(\S+%)", r) for r in rows)}
    assert shown == {c: percent(p, 1) for c, p in probs.items()}
