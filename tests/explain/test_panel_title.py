"""The panel's title by value: a class and its percentage (never 100% or 0%) for a diagnosis, and
no class, no percentage for an image without one, whichever class the maps follow."""
from __future__ import annotations

import re

import pytest

from diseaseid.explain.report import panel_title
from diseaseid.outcomes import NOT_A_BRAIN_MRI, NOT_A_BRAIN_MRI_DISPLAY
from diseaseid.serving import Prediction
from diseaseid.tasks import get_task

TUMOR = get_task("tumor")
MODEL = "tumor/student:lite0_stage5"


def prediction(probs: tuple[float, ...], outcome: str = "diagnosis") -> Prediction:
    i = max(range(len(probs)), key=probs.__getitem__)
    flagged = outcome != "diagnosis"
    return Prediction(label_index=None if flagged else i, label=None if flagged else TUMOR.classes[i],
                      display_en=NOT_A_BRAIN_MRI_DISPLAY["en"] if flagged else TUMOR.display(i, "en"),
                      display_ru=NOT_A_BRAIN_MRI_DISPLAY["ru"] if flagged else TUMOR.display(i, "ru"),
                      probabilities=dict(zip(TUMOR.classes, probs, strict=True)), ood_score=1.0, ood=flagged,
                      ood_reasons=["unlike the brain MRI slices"] if flagged else [], outcome=outcome)


def test_a_diagnosis_names_its_class_and_percentage():
    p = prediction((0.93, 0.04, 0.02, 0.01))
    assert panel_title(TUMOR, p, 0, MODEL) == "Glioma: 93% (tumor/student:lite0_stage5)"
    assert panel_title(TUMOR, p, 1, MODEL) == "Why Meningioma? (4%; predicted Glioma) (tumor/student:lite0_stage5)"


def test_a_near_certain_class_does_not_read_100_and_an_unlikely_one_not_0():
    p = prediction((0.9972, 0.0024, 0.0003, 0.0001))
    assert panel_title(TUMOR, p, 0, MODEL) == "Glioma: >99% (tumor/student:lite0_stage5)"
    assert panel_title(TUMOR, p, 3, MODEL) == ("Why Pituitary tumor? (<1%; predicted Glioma) "
                                               "(tumor/student:lite0_stage5)")


@pytest.mark.parametrize("target", range(4))
def test_an_image_without_a_diagnosis_gets_no_class_and_no_percentage(target):
    """Found 4: a flagged image's panel read "...score for Meningioma, 54%"."""
    p = prediction((0.22, 0.54, 0.2, 0.04), outcome=NOT_A_BRAIN_MRI)
    title = panel_title(TUMOR, p, target, MODEL)
    assert title == ("Not a brain MRI slice: no diagnosis (the maps show only what drives the model's score) "
                     "(tumor/student:lite0_stage5)")
    for i, name in enumerate(TUMOR.classes):
        assert name.lower() not in title.lower() and TUMOR.display(i, "en").lower() not in title.lower()
    assert not re.search(r"\d\s*%", title)
