"""``explain_slice``: the one report behind ``diseaseid explain`` and the explain worker."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diseaseid.data.preprocess import decode_image
from diseaseid.explain.report import explain_slice


@pytest.fixture(scope="module")
def predictor(shipped):
    return shipped("tumor", "student")


@pytest.fixture(scope="module")
def image(fixtures_dir):
    return decode_image(sorted((fixtures_dir / "tumor" / "glioma").glob("*.jpg"))[0])


def test_files_and_title_for_the_predicted_class(predictor, image):
    report = explain_slice(predictor, image)
    assert set(report.files) == {"gradcam.png", "gradcam.npy", "lrp.png", "lrp.npy", "panel.png"}
    assert report.target == report.prediction.label_index
    assert report.title.startswith(f"{report.prediction.display_en}: ") and predictor.name in report.title
    assert np.array_equal(np.load(io.BytesIO(report.files["lrp.npy"])), report.maps["lrp"])
    assert Image.open(io.BytesIO(report.files["gradcam.png"])).size == (448, 448)
    assert set(report.timing) == {"predict", "explain", "render"} and set(report.render_s) == {"gradcam", "lrp"}


def test_another_class_by_name_one_method(predictor, image):
    predicted = predictor.predict(image[None])[0].label
    other = next(c for c in predictor.task.classes if c != predicted)
    report = explain_slice(predictor, image, ["gradcam"], target=other)
    assert report.target == predictor.task.classes.index(other)
    assert set(report.files) == {"gradcam.png", "gradcam.npy", "panel.png"}
    assert report.title.startswith(f"Why {predictor.task.display(report.target)}?")


@pytest.mark.parametrize("methods, target", [(["shap"], None), ([], None), (["lrp"], 7)])
def test_bad_arguments_are_value_errors(predictor, image, methods, target):
    with pytest.raises(ValueError):
        explain_slice(predictor, image, methods, target)


def test_an_image_that_is_not_mri_gets_no_diagnosis_in_the_panel(predictor, monkeypatch):
    """A grayscale cat on black was once titled "Meningioma (97%)" and called "MRI slice"."""
    pytest.importorskip("skimage")
    import diseaseid.explain.report as report_module
    from diseaseid.ood.images import cat_on_black

    drawn = {}
    panel_png = report_module.panel_png

    def spy(*args, **kwargs):
        drawn.update(kwargs, title=args[3])
        return panel_png(*args, **kwargs)

    monkeypatch.setattr(report_module, "panel_png", spy)
    report = explain_slice(predictor, cat_on_black())
    p = report.prediction
    assert p.ood and p.label is None and p.outcome == "not_a_brain_mri"
    assert report.target == p.top_index == int(np.argmax(list(p.probabilities.values())))
    assert report.title.startswith(f"{p.display_en}: no diagnosis") and predictor.name in report.title
    for name in predictor.task.classes:
        assert not report.title.startswith(predictor.task.display(predictor.task.classes.index(name), "en"))
    assert drawn["title"] == report.title and drawn["original"] == "Input image"
    # A diagnosis keeps its title and caption.
    image = decode_image(sorted((Path(__file__).parents[1] / "fixtures" / "tumor" / "glioma").glob("*.jpg"))[0])
    drawn.clear()
    report = explain_slice(predictor, image)
    if report.prediction.is_diagnosis:
        assert drawn["original"] == "MRI slice" and report.title.startswith(report.prediction.display_en + ": ")
