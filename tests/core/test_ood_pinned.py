"""The shipped OOD statistics (``weights/<task>/ood.json`` + ``ood.safetensors``) give, through the serving path,
the flags, scores and outcomes they gave before the OOD code became one package (``diseaseid.ood``): measured
with the old modules (diseaseid/serving/ood*.py, tests/ood_images.py, commit f4d8d25) on every committed fixture
slice of both tasks and the two non-MRI examples, and stored here.

A new fit or a new detector model changes these by design: the pinned fingerprints then fail first, naming the
file; re-pin with ``.venv/bin/python -m tests.core.test_ood_pinned`` (prints the table) after checking the change.
"""
from __future__ import annotations

import hashlib
import sys

import numpy as np
import pytest

from diseaseid.data.dataset import ImageFolder
from diseaseid.paths import fixtures_dir, weights_dir
from diseaseid.serving import ROLES
from diseaseid.tasks import TASKS, get_task

pytest.importorskip("skimage")

# Scores run through float32 kernels (ONNX Runtime by default) whose rounding may differ by CPU; the nearest
# score lies 14% from its threshold, so no flag can flip within this tolerance.
SCORE_RTOL = 1e-3

EXPECTED = {
    "dementia": {
        "detector_version": "f2f23fc0e889",
        "ood.json": "a328b550fa1144c98c987b56c291b349d41ae0cb2fd213f30035f1240091d7b5",
        "ood.safetensors": "ade91b6413c426e663b081520a63aba3aee797000fb4d9f64dd83245e5a3890a",
        "threshold": 67.01034137883134,
        "answers": {
            "dementia/NonDemented/NonDemented-003_r08.jpg": (False, 39.6295, "diagnosis"),
            "dementia/NonDemented/NonDemented-003_r16.jpg": (False, 38.586, "diagnosis"),
            "dementia/NonDemented/NonDemented-003_r24.jpg": (False, 41.9696, "diagnosis"),
            "dementia/NonDemented/NonDemented-004_r08.jpg": (False, 36.3641, "diagnosis"),
            "dementia/NonDemented/NonDemented-004_r16.jpg": (False, 37.0244, "diagnosis"),
            "dementia/NonDemented/NonDemented-004_r24.jpg": (False, 43.9956, "diagnosis"),
            "dementia/NonDemented/NonDemented-006_r08.jpg": (False, 39.3049, "diagnosis"),
            "dementia/NonDemented/NonDemented-006_r16.jpg": (False, 37.0034, "diagnosis"),
            "dementia/NonDemented/NonDemented-006_r24.jpg": (False, 39.2424, "diagnosis"),
            "dementia/VeryMildDemented/VeryMildDemented-002_r08.jpg": (False, 33.9599, "diagnosis"),
            "dementia/VeryMildDemented/VeryMildDemented-002_r16.jpg": (False, 44.352, "diagnosis"),
            "dementia/VeryMildDemented/VeryMildDemented-002_r24.jpg": (False, 48.9537, "diagnosis"),
            "dementia/VeryMildDemented/VeryMildDemented-003_r08.jpg": (False, 30.906, "diagnosis"),
            "dementia/VeryMildDemented/VeryMildDemented-003_r16.jpg": (False, 33.4583, "diagnosis"),
            "dementia/VeryMildDemented/VeryMildDemented-003_r24.jpg": (False, 35.4576, "diagnosis"),
            "dementia/VeryMildDemented/VeryMildDemented-004_r08.jpg": (False, 42.042, "diagnosis"),
            "dementia/VeryMildDemented/VeryMildDemented-004_r16.jpg": (False, 53.0187, "diagnosis"),
            "dementia/VeryMildDemented/VeryMildDemented-004_r24.jpg": (False, 50.7639, "diagnosis"),
            "dementia/MildDemented/MildDemented-002_r08.jpg": (False, 48.7216, "diagnosis"),
            "dementia/MildDemented/MildDemented-002_r16.jpg": (False, 51.9878, "diagnosis"),
            "dementia/MildDemented/MildDemented-002_r24.jpg": (False, 56.2419, "diagnosis"),
            "dementia/MildDemented/MildDemented-003_r08.jpg": (False, 36.4898, "diagnosis"),
            "dementia/MildDemented/MildDemented-003_r16.jpg": (False, 33.6654, "diagnosis"),
            "dementia/MildDemented/MildDemented-003_r24.jpg": (False, 40.7253, "diagnosis"),
            "dementia/MildDemented/MildDemented-004_r08.jpg": (False, 40.7995, "diagnosis"),
            "dementia/MildDemented/MildDemented-004_r16.jpg": (False, 36.2476, "diagnosis"),
            "dementia/MildDemented/MildDemented-004_r24.jpg": (False, 36.3344, "diagnosis"),
            "dementia/ModerateDemented/ModerateDemented-001_r08.jpg": (False, 37.7976, "diagnosis"),
            "dementia/ModerateDemented/ModerateDemented-001_r16.jpg": (False, 30.8039, "diagnosis"),
            "dementia/ModerateDemented/ModerateDemented-001_r24.jpg": (False, 33.5669, "diagnosis"),
            "dementia/ModerateDemented/ModerateDemented-002_r08.jpg": (False, 35.9041, "diagnosis"),
            "dementia/ModerateDemented/ModerateDemented-002_r16.jpg": (False, 39.3024, "diagnosis"),
            "dementia/ModerateDemented/ModerateDemented-002_r24.jpg": (False, 43.6007, "diagnosis"),
            "tumor/glioma/Tr-gl_0082.jpg": (True, 256.0205, "wrong_task:tumor"),
            "tumor/glioma/Tr-gl_0530.jpg": (True, 281.4711, "wrong_task:tumor"),
            "tumor/glioma/Tr-gl_0788.jpg": (True, 296.2898, "wrong_task:tumor"),
            "tumor/glioma/Tr-gl_0861.jpg": (True, 301.0278, "wrong_task:tumor"),
            "tumor/meningioma/Tr-me_0621.jpg": (True, 368.2489, "wrong_task:tumor"),
            "tumor/meningioma/Tr-me_0829.jpg": (True, 293.8192, "wrong_task:tumor"),
            "tumor/meningioma/Tr-me_0995.jpg": (True, 330.9703, "wrong_task:tumor"),
            "tumor/meningioma/Tr-me_1047.jpg": (True, 332.3739, "wrong_task:tumor"),
            "tumor/notumor/Tr-no_0447.jpg": (True, 158.5983, "wrong_task:tumor"),
            "tumor/notumor/Tr-no_0733.jpg": (True, 232.2731, "wrong_task:tumor"),
            "tumor/notumor/Tr-no_0976.jpg": (True, 168.015, "wrong_task:tumor"),
            "tumor/notumor/Tr-no_1198.jpg": (True, 136.9703, "wrong_task:tumor"),
            "tumor/pituitary/Tr-pi_0285.jpg": (True, 304.5553, "wrong_task:tumor"),
            "tumor/pituitary/Tr-pi_0286.jpg": (True, 353.3488, "wrong_task:tumor"),
            "tumor/pituitary/Tr-pi_0577.jpg": (True, 330.7174, "wrong_task:tumor"),
            "tumor/pituitary/Tr-pi_1033.jpg": (True, 265.7062, "wrong_task:tumor"),
            "cat_on_black": (True, 198.9834, "not_a_brain_mri"),
            "text_on_black": (True, 502.7041, "not_a_brain_mri"),
        },
    },
    "tumor": {
        "detector_version": "f2f23fc0e889",
        "ood.json": "549b79cd05d18e444824b6b1f6f7f4ad4d677f130cec7fdaae2d538b3beb96d2",
        "ood.safetensors": "7582e9968fc9fd20c4f068bbc5acf3fafb1193f42e3ae24cb134c5bc023545f5",
        "threshold": 76.84641172131326,
        "answers": {
            "dementia/NonDemented/NonDemented-003_r08.jpg": (False, 50.1042, "diagnosis"),
            "dementia/NonDemented/NonDemented-003_r16.jpg": (False, 54.087, "diagnosis"),
            "dementia/NonDemented/NonDemented-003_r24.jpg": (False, 58.0434, "diagnosis"),
            "dementia/NonDemented/NonDemented-004_r08.jpg": (False, 55.6163, "diagnosis"),
            "dementia/NonDemented/NonDemented-004_r16.jpg": (False, 61.4534, "diagnosis"),
            "dementia/NonDemented/NonDemented-004_r24.jpg": (False, 65.9375, "diagnosis"),
            "dementia/NonDemented/NonDemented-006_r08.jpg": (False, 56.6045, "diagnosis"),
            "dementia/NonDemented/NonDemented-006_r16.jpg": (False, 57.5101, "diagnosis"),
            "dementia/NonDemented/NonDemented-006_r24.jpg": (False, 62.1666, "diagnosis"),
            "dementia/VeryMildDemented/VeryMildDemented-002_r08.jpg": (False, 47.8244, "diagnosis"),
            "dementia/VeryMildDemented/VeryMildDemented-002_r16.jpg": (False, 57.1081, "diagnosis"),
            "dementia/VeryMildDemented/VeryMildDemented-002_r24.jpg": (False, 64.0482, "diagnosis"),
            "dementia/VeryMildDemented/VeryMildDemented-003_r08.jpg": (False, 47.3586, "diagnosis"),
            "dementia/VeryMildDemented/VeryMildDemented-003_r16.jpg": (False, 48.0206, "diagnosis"),
            "dementia/VeryMildDemented/VeryMildDemented-003_r24.jpg": (False, 51.5187, "diagnosis"),
            "dementia/VeryMildDemented/VeryMildDemented-004_r08.jpg": (False, 56.2086, "diagnosis"),
            "dementia/VeryMildDemented/VeryMildDemented-004_r16.jpg": (False, 65.1105, "diagnosis"),
            "dementia/VeryMildDemented/VeryMildDemented-004_r24.jpg": (False, 64.972, "diagnosis"),
            "dementia/MildDemented/MildDemented-002_r08.jpg": (False, 57.6992, "diagnosis"),
            "dementia/MildDemented/MildDemented-002_r16.jpg": (False, 59.0476, "diagnosis"),
            "dementia/MildDemented/MildDemented-002_r24.jpg": (False, 60.8642, "diagnosis"),
            "dementia/MildDemented/MildDemented-003_r08.jpg": (False, 50.4984, "diagnosis"),
            "dementia/MildDemented/MildDemented-003_r16.jpg": (False, 51.8468, "diagnosis"),
            "dementia/MildDemented/MildDemented-003_r24.jpg": (False, 58.9638, "diagnosis"),
            "dementia/MildDemented/MildDemented-004_r08.jpg": (False, 47.8026, "diagnosis"),
            "dementia/MildDemented/MildDemented-004_r16.jpg": (False, 50.0296, "diagnosis"),
            "dementia/MildDemented/MildDemented-004_r24.jpg": (False, 52.3612, "diagnosis"),
            "dementia/ModerateDemented/ModerateDemented-001_r08.jpg": (False, 54.5835, "diagnosis"),
            "dementia/ModerateDemented/ModerateDemented-001_r16.jpg": (False, 52.7131, "diagnosis"),
            "dementia/ModerateDemented/ModerateDemented-001_r24.jpg": (False, 59.1471, "diagnosis"),
            "dementia/ModerateDemented/ModerateDemented-002_r08.jpg": (False, 52.7394, "diagnosis"),
            "dementia/ModerateDemented/ModerateDemented-002_r16.jpg": (False, 56.1959, "diagnosis"),
            "dementia/ModerateDemented/ModerateDemented-002_r24.jpg": (False, 63.9167, "diagnosis"),
            "tumor/glioma/Tr-gl_0082.jpg": (False, 39.1366, "diagnosis"),
            "tumor/glioma/Tr-gl_0530.jpg": (False, 34.5544, "diagnosis"),
            "tumor/glioma/Tr-gl_0788.jpg": (False, 45.817, "diagnosis"),
            "tumor/glioma/Tr-gl_0861.jpg": (False, 30.0224, "diagnosis"),
            "tumor/meningioma/Tr-me_0621.jpg": (False, 39.1979, "diagnosis"),
            "tumor/meningioma/Tr-me_0829.jpg": (False, 37.9277, "diagnosis"),
            "tumor/meningioma/Tr-me_0995.jpg": (False, 39.073, "diagnosis"),
            "tumor/meningioma/Tr-me_1047.jpg": (False, 39.1606, "diagnosis"),
            "tumor/notumor/Tr-no_0447.jpg": (False, 40.3034, "diagnosis"),
            "tumor/notumor/Tr-no_0733.jpg": (False, 61.2486, "diagnosis"),
            "tumor/notumor/Tr-no_0976.jpg": (False, 42.1056, "diagnosis"),
            "tumor/notumor/Tr-no_1198.jpg": (False, 29.0886, "diagnosis"),
            "tumor/pituitary/Tr-pi_0285.jpg": (False, 28.7656, "diagnosis"),
            "tumor/pituitary/Tr-pi_0286.jpg": (False, 40.0185, "diagnosis"),
            "tumor/pituitary/Tr-pi_0577.jpg": (False, 32.3263, "diagnosis"),
            "tumor/pituitary/Tr-pi_1033.jpg": (False, 37.1375, "diagnosis"),
            "cat_on_black": (True, 120.937, "not_a_brain_mri"),
            "text_on_black": (True, 212.6871, "not_a_brain_mri"),
        },
    },
}


def images() -> tuple[list[str], np.ndarray]:
    """Every committed fixture slice (tasks in name order, files as the data set lists them), then the two
    non-MRI examples: one batch, as the values were measured."""
    from diseaseid.ood.images import cat_on_black, text_on_black

    names, stacks = [], []
    for task in sorted(TASKS):
        ds = ImageFolder.scan(fixtures_dir() / task, get_task(task))
        names += [f"{task}/{f}" for f in ds.files]
        stacks.append(ds.images)
    names += ["cat_on_black", "text_on_black"]
    return names, np.concatenate([*stacks, np.stack([cat_on_black(), text_on_black()])])


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def answers(predictor, names: list[str], batch: np.ndarray) -> dict[str, tuple[bool, float, str]]:
    return {n: (bool(p.ood), round(float(p.ood_score), 4), p.outcome + (f":{p.suited_task}" if p.suited_task else ""))
            for n, p in zip(names, predictor.predict(batch))}


@pytest.fixture(scope="module")
def batch():
    return images()


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_the_pinned_statistics_are_shipped(task):
    pinned = EXPECTED[task]
    for name in ("ood.json", "ood.safetensors"):
        assert sha256(weights_dir() / task / name) == pinned[name], (
            f"weights/{task}/{name} is not the file these values were measured with: re-pin (see the docstring)")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_flags_scores_and_outcomes_are_the_pinned_ones(task, role, batch, shipped):
    pinned = EXPECTED[task]
    predictor = shipped(task, role)
    assert predictor.detector.version == pinned["detector_version"]
    assert predictor.feature_detector is not None and predictor.feature_detector.threshold == pinned["threshold"]
    names, images_ = batch
    assert names == list(pinned["answers"])
    got = answers(predictor, names, images_)
    flags = {n: (g[0], g[2]) for n, g in got.items()}
    assert flags == {n: (e[0], e[2]) for n, e in pinned["answers"].items()}
    scores = np.array([got[n][1] for n in names])
    np.testing.assert_allclose(scores, [pinned["answers"][n][1] for n in names], rtol=SCORE_RTOL)
    # the pins are not vacuous: both outcomes of a refusal and diagnoses are among them
    assert {e[2].split(":")[0] for e in pinned["answers"].values()} >= {"diagnosis", "not_a_brain_mri"}


if __name__ == "__main__":  # re-pin: print the measured values in EXPECTED's layout
    from diseaseid.serving import Predictor

    names, images_ = images()
    print("EXPECTED = {")
    for task in sorted(TASKS):
        predictor = Predictor.from_shipped(task, "student")
        print(f'    "{task}": {{\n        "detector_version": "{predictor.detector.version}",')
        for name in ("ood.json", "ood.safetensors"):
            print(f'        "{name}": "{sha256(weights_dir() / task / name)}",')
        print(f'        "threshold": {predictor.feature_detector.threshold!r},\n        "answers": {{')
        for n, row in answers(predictor, names, images_).items():
            print(f'            "{n}": {row!r},')
        print("        },\n    },")
    print("}")
    sys.exit(0)
