"""The OOD image checks and image statistics take exact integer shortcuts on the serving path (a grey slice's
checks from integer sums, the statistics' means from integer totals); they must answer as the float32 code they
replaced does, to the bit: the reasons' texts and the statistics that enter every OOD score. The replaced code is
transcribed here literally (``diseaseid/ood/detector.py`` at commit dfb6ea7) and both run on the fixture slices of
both tasks, every generated non-MRI image, and edge cases near each threshold."""
from __future__ import annotations

import numpy as np
import pytest

from diseaseid.data.dataset import ImageFolder
from diseaseid.ood.detector import _gray_chroma, image_checks, image_statistics
from diseaseid.tasks import TASKS, get_task


def literal_checks(img: np.ndarray) -> list[str]:
    reasons = []
    gray, chroma = _gray_chroma(img[::2, ::2])
    lit = gray > 30
    chroma_lit = float(chroma[lit].mean()) if lit.any() else 0.0
    if chroma.mean() > 6.0 or chroma_lit > 3.0:
        reasons.append(f"colour image (mean chroma {max(chroma.mean(), chroma_lit):.1f}); MRI slices are grayscale")
    if gray.std() < 4.0:
        reasons.append("almost uniform image")
    a, b = gray[:, :-1].ravel(), gray[:, 1:].ravel()
    if a.std() > 1 and b.std() > 1:
        corr = float(np.corrcoef(a, b)[0, 1])
        if corr < 0.25:
            reasons.append(f"noise-like image (neighbour correlation {corr:.2f})")
    border = np.concatenate([gray[:4].ravel(), gray[-4:].ravel(), gray[:, :4].ravel(), gray[:, -4:].ravel()])
    if np.median(border) > 60:
        reasons.append("bright background; MRI slices have a dark background")
    return reasons


def literal_statistics(img: np.ndarray) -> np.ndarray:
    g = np.asarray(img)[..., 0].astype(np.float32)
    fg = g > 25
    if fg.sum() < 100:
        return np.zeros(4)
    pairs = fg[:, :-1] & fg[:, 1:]
    step = np.abs(g[:, :-1] - g[:, 1:])[pairs]
    lap = np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])[fg[1:-1, 1:-1]]
    mean = float(g[fg].mean())
    step_mean = step.mean() if step.size else np.float32(0)
    lap_mean = lap.mean() if lap.size else np.float32(0)
    return np.array([np.log(step_mean / mean + 1e-6), np.log(lap_mean / mean + 1e-6), fg.mean(),
                     np.log(g[fg].std() / mean + 1e-6)])


def grey(g: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(g, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def edge_cases() -> dict[str, np.ndarray]:
    """Grey images at and around each threshold of the checks, and statistics whose totals pass 2**24."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:224, :224]
    out = {"black": grey(np.zeros((224, 224))), "white": grey(np.full((224, 224), 255)),
           "salt": grey((rng.random((224, 224)) < 0.5) * 255),  # Laplacian total over 2**24
           "noise": grey(rng.integers(0, 256, (224, 224))), "few_dots": grey((rng.random((224, 224)) < 0.001) * 200)}
    for std in (3.9, 3.999, 4.0, 4.001, 4.1):  # the uniform check's std of 4
        out[f"std:{std}"] = grey(128 + np.round(std * rng.standard_normal((224, 224))))
    for step in (0, 1, 2):  # the noise check's gate (neighbours' std of 1)
        out[f"stripes:{step}"] = grey(100 + step * ((xx // 2) % 2))
    for smooth in (1, 2, 3, 4, 6):  # neighbour correlations around 0.25
        noise = rng.standard_normal((224, 224 + smooth))
        out[f"corr:{smooth}"] = grey(128 + 40 * np.stack([noise[:, i:i + 224] for i in range(smooth)]).mean(0))
    for level in (58, 60, 61, 62):  # the border median of 60
        img = np.full((224, 224), level)
        img[40:-40, 40:-40] = 150
        out[f"border:{level}"] = grey(img)
    return out


def every_image() -> dict[str, np.ndarray]:
    from diseaseid.ood.images import non_mri

    images = {}
    for task in TASKS:
        folder = ImageFolder.scan(__import__("diseaseid.paths").paths.fixtures_dir() / task, get_task(task))
        images.update({f"{task}:{i}": x for i, x in enumerate(folder.images)})
    for which in ("calibration", "heldout"):
        images.update({f"{which}:{k}": v for k, v in non_mri(which).items()})
    images.update(edge_cases())
    return images


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    pytest.importorskip("skimage")
    return every_image()


def test_image_checks_answer_as_the_float_code(images):
    for name, img in images.items():
        assert image_checks(img) == literal_checks(img), name
    reasons = {r.split(" (")[0] for img in images.values() for r in literal_checks(img)}
    assert {"almost uniform image", "noise-like image", "bright background; MRI slices have a dark background",
            "colour image"} <= reasons  # every check fires somewhere, so each branch is compared


def test_image_statistics_equal_the_float_code_to_the_bit(images):
    for name, img in images.items():
        got, want = image_statistics(img), literal_statistics(img)
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), (name, got, want)


def test_the_grey_shortcut_serves_grey_slices(images, monkeypatch):
    """A fixture slice is grey: its checks come from the integer shortcut, not the float path."""
    import diseaseid.ood.detector as detector

    calls = []
    monkeypatch.setattr(detector, "_gray_chroma", lambda x: calls.append(1) or _gray_chroma(x))
    assert image_checks(images["dementia:0"]) == [] and not calls
