"""``python -m diseaseid``: every command group registered, one way to pick a model, ``predict`` end to end."""
from __future__ import annotations

import json

import pytest

from diseaseid.cli import build_parser, main
from diseaseid.models import read_card
from diseaseid.paths import REPO_ROOT
from diseaseid.serving import ROLES


def subparsers() -> dict:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def test_every_command_is_registered():
    assert {"train", "evaluate", "search", "train-mil", "predict", "calibrate", "explain",
            "explain-eval"} <= set(subparsers())


@pytest.mark.parametrize("command", ["evaluate", "predict", "calibrate", "explain", "explain-eval"])
def test_model_choices_are_the_roles(command):
    model = next(a for a in subparsers()[command]._actions if a.dest == "model")
    assert tuple(model.choices) == ROLES and model.default == "student"


def test_predict_json(fixtures_dir, capsys):
    image = sorted((fixtures_dir / "tumor" / "glioma").glob("*.jpg"))[0]
    assert main(["predict", str(image), "--task", "tumor", "--model", "student", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    arch = read_card(REPO_ROOT / "weights" / "tumor" / "student.json")["arch"]  # lite0_stage5 since 2026-11-28
    assert answer["model"] == f"tumor/student:{arch}" and set(answer["probabilities"]) == {
        "glioma", "meningioma", "notumor", "pituitary"}
