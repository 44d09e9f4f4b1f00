"""``python -m diseaseid``: every command with the options it always had, one way to pick a model, the commands
in one package that the core never imports, ``predict`` end to end."""
from __future__ import annotations

import ast
import json

import pytest

from diseaseid.cli import build_parser, main
from diseaseid.models import read_card
from diseaseid.paths import REPO_ROOT
from diseaseid.serving import ROLES

# Every command and its options (option strings; positionals by name), as they were before the commands moved
# into diseaseid/cli/: scripts and the training recipes (scripts/train_*.sh) call them so. In --help order.
COMMANDS = {
    "train": [
        "--aug-blur", "--aug-noise", "--aug-noise-p", "--aug-scan-copies", "--aug-scan-noise",
        "--aug-scan-p", "--balanced", "--batch-size", "--channels-last",
        "--consistency", "--data", "--device", "--dropout", "--epochs", "--help", "--init", "--init-partial",
        "--input-median", "--input-pool", "--input-smooth", "--kd-online", "--kd-temperature", "--kd-views",
        "--label-smoothing", "--low-res", "--low-res-epochs", "--lr", "--mask-background", "--model", "--no-augment",
        "--no-channels-last", "--out", "--patience", "--per-class", "--precision", "--quiet", "--resume",
        "--seed", "--select", "--ship", "--split", "--stop-after", "--task", "--teacher", "--threads",
        "--w-ce", "--w-soft", "--warmup-epochs", "--weight-decay", "--widths", "-h"
    ],
    "evaluate": [
        "--data", "--help", "--model", "--out", "--runtime", "--task", "--threads", "--uncalibrated",
        "--weights", "-h"
    ],
    "average": [
        "--bn-images", "--help", "--last", "--out", "--ship", "--snapshots", "--task", "--threads",
        "--weights", "-h"
    ],
    "ensemble": [
        "--help", "--out", "--task", "--threads", "--weights", "-h"
    ],
    "search": [
        "--balanced", "--data", "--device", "--epochs", "--help", "--max-params", "--model", "--out",
        "--per-class", "--seed", "--select", "--storage", "--study-name", "--task", "--teacher", "--threads",
        "--timeout", "--trials", "-h"
    ],
    "train-mil": [
        "--backbone", "--class-weights", "--data", "--dropout", "--epochs", "--help", "--hidden", "--lr",
        "--out", "--seeds", "--ship", "--task", "--threads", "--weight-decay", "-h"
    ],
    "cv": [
        "--data", "--folds", "--heads", "--help", "--out", "--repeats", "--seed", "--task", "--threads", "-h"
    ],
    "ship-dementia": [
        "--augmented", "--folds", "--help", "--out", "--repeats", "--ship", "--study-backbone", "--study-head",
        "--study-only", "--threads", "-h"
    ],
    "predict": [
        "--help", "--json", "--model", "--runtime", "--task", "--threads", "--weights", "-h", "image"
    ],
    "calibrate": [
        "--help", "--model", "--runtime", "--task", "--threads", "--weights", "-h"
    ],
    "export": [
        "--force", "--help", "-h", "weights"
    ],
    "ood-fit": [
        "--change-sample", "--detector", "--help", "--image-weight", "--max-change-flagged", "--max-mri-flagged",
        "--out", "--rank", "--table", "--task", "--threads", "--train-sample", "-h"
    ],
    "explain": [
        "--compact", "--composite", "--device", "--help", "--method", "--model", "--out", "--target",
        "--task", "-h", "images"
    ],
    "explain-eval": [
        "--batch-size", "--composite", "--data", "--device", "--help", "--model", "--n", "--out", "--patch",
        "--seed", "--steps", "--task", "--threads", "-h"
    ],
    "robustness": [
        "--help", "--n", "--only", "--out", "--relevance-methods", "--relevance-n", "--role", "--seed", "--studies",
        "--study-folds", "--task", "--threads", "-h"
    ],
}



def subparsers() -> dict:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def options(parser) -> list[str]:
    return sorted(o for a in parser._actions for o in (a.option_strings or [a.dest]))


def test_every_command_keeps_its_options():
    found = subparsers()
    assert list(found) == list(COMMANDS)
    assert {name: options(parser) for name, parser in found.items()} == COMMANDS


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_the_core_never_imports_the_commands_and_serving_never_imports_training():
    """Commands sit on top (diseaseid/cli/); what serves answers does not reach up into training either."""
    package = REPO_ROOT / "diseaseid"
    for path in package.rglob("*.py"):
        if "cli" in path.relative_to(package).parts or path.name == "__main__.py":
            continue
        modules = imported_modules(path)
        assert not {m for m in modules if m == "diseaseid.cli" or m.startswith("diseaseid.cli.")}, path
        if path.parent.name in ("serving", "ood") and path.name != "fit.py":
            assert not {m for m in modules if m.startswith("diseaseid.train")}, path


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
