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

# Scores run through float32 kernels (ONNX Runtime by default) whose rounding may differ by CPU (about 1e-5
# relative); the nearest score lies 0.11% from its threshold (a dementia fixture under the tumor statistics fitted
# for issue 24: 50.625 against 50.570), still past this tolerance, so no flag can flip within it.
SCORE_RTOL = 1e-3

EXPECTED = {
    "dementia": {
        "detector_version": "308083816571",
        "ood.json": "2622f0e4a67ec2d1c181543a59315daeca1d0860e0edb867a86cc7f10a35ac64",
        "ood.safetensors": "1fe3ef2324c2de55eb9931fd637159a0331871bff10cb36177c6bdc16ecbc1c1",
        "threshold": 73.73320748101497,
        "answers": {
            "dementia/NonDemented/NonDemented-003_r08.jpg": (False, 39.0577, 'diagnosis'),
            "dementia/NonDemented/NonDemented-003_r16.jpg": (False, 37.9864, 'diagnosis'),
            "dementia/NonDemented/NonDemented-003_r24.jpg": (False, 41.8972, 'diagnosis'),
            "dementia/NonDemented/NonDemented-004_r08.jpg": (False, 36.2125, 'diagnosis'),
            "dementia/NonDemented/NonDemented-004_r16.jpg": (False, 36.3754, 'diagnosis'),
            "dementia/NonDemented/NonDemented-004_r24.jpg": (False, 44.5195, 'diagnosis'),
            "dementia/NonDemented/NonDemented-006_r08.jpg": (False, 38.6311, 'diagnosis'),
            "dementia/NonDemented/NonDemented-006_r16.jpg": (False, 36.0122, 'diagnosis'),
            "dementia/NonDemented/NonDemented-006_r24.jpg": (False, 39.632, 'diagnosis'),
            "dementia/VeryMildDemented/VeryMildDemented-002_r08.jpg": (False, 34.5555, 'diagnosis'),
            "dementia/VeryMildDemented/VeryMildDemented-002_r16.jpg": (False, 44.4252, 'diagnosis'),
            "dementia/VeryMildDemented/VeryMildDemented-002_r24.jpg": (False, 48.8208, 'diagnosis'),
            "dementia/VeryMildDemented/VeryMildDemented-003_r08.jpg": (False, 31.4956, 'diagnosis'),
            "dementia/VeryMildDemented/VeryMildDemented-003_r16.jpg": (False, 33.4914, 'diagnosis'),
            "dementia/VeryMildDemented/VeryMildDemented-003_r24.jpg": (False, 35.783, 'diagnosis'),
            "dementia/VeryMildDemented/VeryMildDemented-004_r08.jpg": (False, 41.3557, 'diagnosis'),
            "dementia/VeryMildDemented/VeryMildDemented-004_r16.jpg": (False, 53.3348, 'diagnosis'),
            "dementia/VeryMildDemented/VeryMildDemented-004_r24.jpg": (False, 50.2536, 'diagnosis'),
            "dementia/MildDemented/MildDemented-002_r08.jpg": (False, 49.3326, 'diagnosis'),
            "dementia/MildDemented/MildDemented-002_r16.jpg": (False, 51.4749, 'diagnosis'),
            "dementia/MildDemented/MildDemented-002_r24.jpg": (False, 55.6309, 'diagnosis'),
            "dementia/MildDemented/MildDemented-003_r08.jpg": (False, 36.0575, 'diagnosis'),
            "dementia/MildDemented/MildDemented-003_r16.jpg": (False, 34.0682, 'diagnosis'),
            "dementia/MildDemented/MildDemented-003_r24.jpg": (False, 41.1779, 'diagnosis'),
            "dementia/MildDemented/MildDemented-004_r08.jpg": (False, 40.6369, 'diagnosis'),
            "dementia/MildDemented/MildDemented-004_r16.jpg": (False, 37.3046, 'diagnosis'),
            "dementia/MildDemented/MildDemented-004_r24.jpg": (False, 36.3393, 'diagnosis'),
            "dementia/ModerateDemented/ModerateDemented-001_r08.jpg": (False, 38.5273, 'diagnosis'),
            "dementia/ModerateDemented/ModerateDemented-001_r16.jpg": (False, 31.6105, 'diagnosis'),
            "dementia/ModerateDemented/ModerateDemented-001_r24.jpg": (False, 34.6755, 'diagnosis'),
            "dementia/ModerateDemented/ModerateDemented-002_r08.jpg": (False, 35.6004, 'diagnosis'),
            "dementia/ModerateDemented/ModerateDemented-002_r16.jpg": (False, 39.2473, 'diagnosis'),
            "dementia/ModerateDemented/ModerateDemented-002_r24.jpg": (False, 44.095, 'diagnosis'),
            "tumor/glioma/Tr-gl_0082.jpg": (True, 266.6556, 'wrong_task:tumor'),
            "tumor/glioma/Tr-gl_0530.jpg": (True, 285.4094, 'wrong_task:tumor'),
            "tumor/glioma/Tr-gl_0788.jpg": (True, 300.8961, 'wrong_task:tumor'),
            "tumor/glioma/Tr-gl_0861.jpg": (True, 298.9121, 'wrong_task:tumor'),
            "tumor/meningioma/Tr-me_0621.jpg": (True, 377.603, 'wrong_task:tumor'),
            "tumor/meningioma/Tr-me_0829.jpg": (True, 310.3523, 'wrong_task:tumor'),
            "tumor/meningioma/Tr-me_0995.jpg": (True, 347.8505, 'wrong_task:tumor'),
            "tumor/meningioma/Tr-me_1047.jpg": (True, 350.0922, 'wrong_task:tumor'),
            "tumor/notumor/Tr-no_0447.jpg": (True, 160.4935, 'wrong_task:tumor'),
            "tumor/notumor/Tr-no_0733.jpg": (True, 232.2931, 'wrong_task:tumor'),
            "tumor/notumor/Tr-no_0976.jpg": (True, 172.6481, 'wrong_task:tumor'),
            "tumor/notumor/Tr-no_1198.jpg": (True, 140.8108, 'wrong_task:tumor'),
            "tumor/pituitary/Tr-pi_0285.jpg": (True, 299.0521, 'wrong_task:tumor'),
            "tumor/pituitary/Tr-pi_0286.jpg": (True, 348.2722, 'wrong_task:tumor'),
            "tumor/pituitary/Tr-pi_0577.jpg": (True, 326.2961, 'wrong_task:tumor'),
            "tumor/pituitary/Tr-pi_1033.jpg": (True, 253.6636, 'wrong_task:tumor'),
            "cat_on_black": (True, 200.8813, 'not_a_brain_mri'),
            "text_on_black": (True, 502.1708, 'not_a_brain_mri'),
        },
    },
    "tumor": {
        "detector_version": "308083816571",
        "ood.json": "ffcd12d483e75a7f84d276bc9a028eaf82079f970fe9fccefc14420883eb8dc1",
        "ood.safetensors": "8b9cfe9867f0877b50a1ff61719a4cd0909eb77f80b8125399f7cb0d9dca6a9d",
        "threshold": 50.56947378960276,
        "answers": {
            "dementia/NonDemented/NonDemented-003_r08.jpg": (False, 40.5028, 'diagnosis'),
            "dementia/NonDemented/NonDemented-003_r16.jpg": (False, 41.733, 'diagnosis'),
            "dementia/NonDemented/NonDemented-003_r24.jpg": (False, 43.0611, 'diagnosis'),
            "dementia/NonDemented/NonDemented-004_r08.jpg": (False, 40.6401, 'diagnosis'),
            "dementia/NonDemented/NonDemented-004_r16.jpg": (False, 44.9362, 'diagnosis'),
            "dementia/NonDemented/NonDemented-004_r24.jpg": (False, 50.3422, 'diagnosis'),
            "dementia/NonDemented/NonDemented-006_r08.jpg": (False, 38.8834, 'diagnosis'),
            "dementia/NonDemented/NonDemented-006_r16.jpg": (False, 42.6576, 'diagnosis'),
            "dementia/NonDemented/NonDemented-006_r24.jpg": (True, 50.6254, 'wrong_task:dementia'),
            "dementia/VeryMildDemented/VeryMildDemented-002_r08.jpg": (False, 39.3089, 'diagnosis'),
            "dementia/VeryMildDemented/VeryMildDemented-002_r16.jpg": (False, 44.386, 'diagnosis'),
            "dementia/VeryMildDemented/VeryMildDemented-002_r24.jpg": (False, 48.1845, 'diagnosis'),
            "dementia/VeryMildDemented/VeryMildDemented-003_r08.jpg": (False, 39.6847, 'diagnosis'),
            "dementia/VeryMildDemented/VeryMildDemented-003_r16.jpg": (False, 40.0355, 'diagnosis'),
            "dementia/VeryMildDemented/VeryMildDemented-003_r24.jpg": (False, 40.1266, 'diagnosis'),
            "dementia/VeryMildDemented/VeryMildDemented-004_r08.jpg": (False, 43.1044, 'diagnosis'),
            "dementia/VeryMildDemented/VeryMildDemented-004_r16.jpg": (True, 51.0108, 'wrong_task:dementia'),
            "dementia/VeryMildDemented/VeryMildDemented-004_r24.jpg": (False, 47.1498, 'diagnosis'),
            "dementia/MildDemented/MildDemented-002_r08.jpg": (False, 43.3881, 'diagnosis'),
            "dementia/MildDemented/MildDemented-002_r16.jpg": (False, 46.8454, 'diagnosis'),
            "dementia/MildDemented/MildDemented-002_r24.jpg": (False, 46.3962, 'diagnosis'),
            "dementia/MildDemented/MildDemented-003_r08.jpg": (False, 40.2018, 'diagnosis'),
            "dementia/MildDemented/MildDemented-003_r16.jpg": (False, 42.3741, 'diagnosis'),
            "dementia/MildDemented/MildDemented-003_r24.jpg": (False, 41.377, 'diagnosis'),
            "dementia/MildDemented/MildDemented-004_r08.jpg": (False, 40.9711, 'diagnosis'),
            "dementia/MildDemented/MildDemented-004_r16.jpg": (False, 40.8427, 'diagnosis'),
            "dementia/MildDemented/MildDemented-004_r24.jpg": (False, 43.4729, 'diagnosis'),
            "dementia/ModerateDemented/ModerateDemented-001_r08.jpg": (False, 44.077, 'diagnosis'),
            "dementia/ModerateDemented/ModerateDemented-001_r16.jpg": (False, 41.9255, 'diagnosis'),
            "dementia/ModerateDemented/ModerateDemented-001_r24.jpg": (False, 45.6689, 'diagnosis'),
            "dementia/ModerateDemented/ModerateDemented-002_r08.jpg": (False, 41.7148, 'diagnosis'),
            "dementia/ModerateDemented/ModerateDemented-002_r16.jpg": (False, 43.4307, 'diagnosis'),
            "dementia/ModerateDemented/ModerateDemented-002_r24.jpg": (False, 50.091, 'diagnosis'),
            "tumor/glioma/Tr-gl_0082.jpg": (False, 34.5662, 'diagnosis'),
            "tumor/glioma/Tr-gl_0530.jpg": (False, 23.4868, 'diagnosis'),
            "tumor/glioma/Tr-gl_0788.jpg": (False, 30.2766, 'diagnosis'),
            "tumor/glioma/Tr-gl_0861.jpg": (False, 28.4592, 'diagnosis'),
            "tumor/meningioma/Tr-me_0621.jpg": (False, 35.9504, 'diagnosis'),
            "tumor/meningioma/Tr-me_0829.jpg": (False, 33.1084, 'diagnosis'),
            "tumor/meningioma/Tr-me_0995.jpg": (False, 33.1764, 'diagnosis'),
            "tumor/meningioma/Tr-me_1047.jpg": (False, 31.8949, 'diagnosis'),
            "tumor/notumor/Tr-no_0447.jpg": (False, 29.1646, 'diagnosis'),
            "tumor/notumor/Tr-no_0733.jpg": (False, 34.1127, 'diagnosis'),
            "tumor/notumor/Tr-no_0976.jpg": (False, 38.5971, 'diagnosis'),
            "tumor/notumor/Tr-no_1198.jpg": (False, 25.171, 'diagnosis'),
            "tumor/pituitary/Tr-pi_0285.jpg": (False, 26.3561, 'diagnosis'),
            "tumor/pituitary/Tr-pi_0286.jpg": (False, 27.4312, 'diagnosis'),
            "tumor/pituitary/Tr-pi_0577.jpg": (False, 28.8876, 'diagnosis'),
            "tumor/pituitary/Tr-pi_1033.jpg": (False, 33.263, 'diagnosis'),
            "cat_on_black": (True, 66.2633, 'not_a_brain_mri'),
            "text_on_black": (True, 138.5246, 'not_a_brain_mri'),
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
