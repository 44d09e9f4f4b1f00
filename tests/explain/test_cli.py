"""``diseaseid explain`` and ``diseaseid explain-eval`` end to end on the shipped student and the fixtures."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from diseaseid.cli import main


def test_explain_writes_overlays_panel_and_raw_maps(tmp_path, fixtures_dir, capsys):
    images = sorted((fixtures_dir / "tumor" / "glioma").glob("*.jpg"))[:2]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    code = main(["explain", *map(str, images), str(bad), "--task", "tumor", "--method", "both",
                 "--model", "student", "--out", str(tmp_path / "out"), "--target", "glioma"])
    assert code == 1  # the broken file is reported, the others still done
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[-1]["error"] and len(lines) == 3
    for line, path in zip(lines[:2], images, strict=True):
        assert line["explained"] == "glioma"
        stem = tmp_path / "out" / path.stem
        for method in ("gradcam", "lrp"):
            assert np.load(f"{stem}.{method}.npy").shape == (224, 224)
            assert Image.open(f"{stem}.{method}.png").size == (448, 448)
        assert Image.open(f"{stem}.panel.png").size[0] <= 1280


def test_explain_one_method(tmp_path, fixtures_dir):
    image = sorted((fixtures_dir / "dementia").glob("*/*.jpg"))[0]
    args = ["explain", str(image), "--task", "dementia", "--method", "gradcam", "--out", str(tmp_path)]
    assert main(args) == 0
    written = {p.name.split(".", 1)[1] for p in tmp_path.iterdir()}
    assert written == {"gradcam.npy", "gradcam.png", "panel.png"}


def test_explain_eval_compares_composites(tmp_path, fixtures_dir):
    code = main(["explain-eval", "--task", "dementia", "--n", "2", "--steps", "2", "--out", str(tmp_path),
                 "--data", str(fixtures_dir / "dementia"), "--composite", "epsilon_gamma_box", "epsilon"])
    assert code == 0
    result = json.loads((tmp_path / "dementia-student.json").read_text())
    assert {"lrp (epsilon_gamma_box)", "lrp (epsilon)"} <= set(result["results"])


def test_explain_eval_writes_table_and_plot(tmp_path, fixtures_dir):
    code = main(["explain-eval", "--task", "tumor", "--n", "3", "--steps", "4", "--out", str(tmp_path),
                 "--data", str(fixtures_dir / "tumor")])
    assert code == 0
    result = json.loads((tmp_path / "tumor-student.json").read_text())
    assert result["n"] == 3
    assert set(result["results"]) == {"lrp", "gradcam", "gradcam++", "hirescam", "gradient", "random"}
    for r in result["results"].values():
        assert 0.0 <= r["deletion_auc"] <= 1.0 and len(r["insertion_curve"]) == 5
    assert "| random |" in (tmp_path / "tumor-student.md").read_text()
    assert (tmp_path / "tumor-student.png").stat().st_size > 1000
