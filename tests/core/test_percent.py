"""A probability never reads 100% or 0%, in every text that shows one (one function,
``diseaseid.percent.percent``: the panel title, the bot's chart and screening line, ``diseaseid predict``)."""
from __future__ import annotations

import html
import re

import pytest

from diseaseid.answers import PredictResponse, example
from diseaseid.percent import percent
from services.bot.formatting import conclusion_text, probability_chart
from services.bot.views import read_prediction


@pytest.mark.parametrize("p, decimals, text", [
    (0.9972, 0, ">99%"), (0.9972, 1, "99.7%"), (0.0004, 0, "<1%"), (0.0004, 1, "<0.1%"),
    (0.995, 0, ">99%"), (0.9949, 0, "99%"), (0.0049, 0, "<1%"), (0.006, 0, "1%"), (0.5, 0, "50%"),
    (0.734, 0, "73%"), (0.9995, 1, ">99.9%"), (0.99949, 1, "99.9%"), (0.00049, 1, "<0.1%"), (0.0006, 1, "0.1%"),
    (1.0, 0, ">99%"), (0.0, 0, "<1%"), (1.0, 1, ">99.9%"), (0.0, 1, "<0.1%"), (0.9972, 2, "99.72%"),
    (1.0, 2, ">99.99%"), (1.5, 0, ">99%"), (-0.2, 0, "<1%"), (float("nan"), 0, "?%"),
])
def test_percent_values(p, decimals, text):
    assert percent(p, decimals) == text


def test_percent_refuses_negative_decimals():
    with pytest.raises(ValueError):
        percent(0.5, -1)


def test_no_probability_anywhere_in_0_to_1_reads_100_or_0():
    for i in range(0, 100_001):
        p = i / 100_000
        for decimals in (0, 1):
            shown = percent(p, decimals)
            assert not re.fullmatch(r"(100|0)(\.0+)?%", shown), (p, shown)


SURE = {**example(PredictResponse), "task": "tumor", "outcome": "diagnosis", "label": "glioma", "label_index": 0,
        "display_en": "Glioma", "display_ru": "Глиома", "ood": {"flag": False, "score": 30.0, "reasons": []},
        "probabilities": {"glioma": 0.99962, "meningioma": 0.00031, "notumor": 0.00006, "pituitary": 0.00001},
        "model": {"role": "student", "name": "tumor/student:lite0_stage5", "arch": "lite0_stage5", "version": "v1"}}


def test_the_bots_chart_shows_near_certain_classes_as_bounds():
    c = read_prediction(SURE)
    rows = html.unescape(probability_chart(c, "en").removeprefix("<pre>").removesuffix("</pre>")).splitlines()
    # the bars line up: every percentage is right-aligned in six columns
    assert [row[-6:] for row in rows] == [">99.9%", " <0.1%", " <0.1%", " <0.1%"]
    assert "100.0%" not in "".join(rows) and " 0.0%" not in "".join(rows)


def test_the_bots_screening_line_never_says_100():
    sure = {**SURE, "task": "dementia", "probabilities": {"NonDemented": 0.0003, "MildDemented": 0.9997},
            "screening": {"impaired_probability": 0.9997, "impaired": True,
                          "display_en": "Cognitive impairment suspected", "display_ru": "Подозрение"}}
    assert "(probability of impairment >99%)" in conclusion_text(read_prediction(sure), "en")
    assert "(вероятность нарушения >99%)" in conclusion_text(read_prediction(sure), "ru")
    none = {**sure, "screening": {**sure["screening"], "impaired_probability": 0.0002, "impaired": False}}
    assert "(probability of impairment <1%)" in conclusion_text(read_prediction(none), "en")
