"""The survivors of the OOD detector's mutation run (docs/testing.md): the image statistics at each
edge (foreground level, foreground size, a flat foreground, the channel read), the noise rule's two
neighbour sets taken one at a time, and the feature detector's edges (a zero image weight, a full-rank basis,
a zero variance, malformed shapes reported rather than raised, saving into an existing folder, the image
statistics kept in float64)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from safetensors.numpy import load_file

from diseaseid.ood.detector import STATS_STEM, FeatureDetector, image_checks, image_statistics

CARD = {"detector": {"task": "tumor", "role": "teacher", "version": "abc123def456"}, "task": "tumor"}
LOG_EPS = math.log(1e-6)


def literal_statistics(img: np.ndarray) -> np.ndarray:
    """image_statistics written out loop by loop from its docstring: channel 0, foreground gray > 25, zeros
    under 100 foreground pixels."""
    g = img[..., 0].astype(np.float64)
    h, w = g.shape
    fg = g > 25
    if fg.sum() < 100:
        return np.zeros(4)
    steps = [abs(g[i, j] - g[i, j + 1]) for i in range(h) for j in range(w - 1) if fg[i, j] and fg[i, j + 1]]
    laps = [abs(4 * g[i, j] - g[i - 1, j] - g[i + 1, j] - g[i, j - 1] - g[i, j + 1])
            for i in range(1, h - 1) for j in range(1, w - 1) if fg[i, j]]
    values = g[fg]
    mean = values.mean()
    step = np.mean(steps) if steps else 0.0  # no neighbouring foreground pair: no step measured
    lap = np.mean(laps) if laps else 0.0
    return np.array([math.log(step / mean + 1e-6), math.log(lap / mean + 1e-6), fg.mean(),
                     math.log(values.std() / mean + 1e-6)])


def rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(gray, np.uint8)[..., None], 3, axis=2)


def test_foreground_is_brighter_than_25():
    """A block of 25s (background) beside a block of 26s (foreground) on a textured head: moving the level by
    one either way changes the foreground share."""
    i, j = np.mgrid[:40, :40]
    gray = np.zeros((40, 40), np.int32)
    gray[5:35, 5:20] = 60 + (i[5:35, 5:20] * 7 + j[5:35, 5:20] * 3) % 50
    gray[5:15, 22:35] = 25
    gray[20:30, 22:35] = 26
    img = rgb(gray)
    got = image_statistics(img)
    np.testing.assert_allclose(got, literal_statistics(img), rtol=1e-5)
    assert got[2] == pytest.approx((30 * 15 + 10 * 13) / 1600)  # the 26s count, the 25s do not


@pytest.mark.parametrize("n, computed", [(99, False), (100, True)])
def test_statistics_need_100_foreground_pixels(n, computed):
    """Scattered dots (no two side by side): 100 of them are enough; no steps are measured (0, not NaN)."""
    gray = np.zeros((30, 30), np.int32)
    idx = np.arange(n)
    gray.flat[idx * 7 % 900] = 100 + idx % 40
    img = rgb(gray)
    got = image_statistics(img)
    assert got.shape == (4,)
    if computed:
        np.testing.assert_allclose(got, literal_statistics(img), rtol=1e-5)
        assert got[2] == pytest.approx(100 / 900) and np.isfinite(got).all()
        assert got[0] == pytest.approx(LOG_EPS)
    else:
        np.testing.assert_array_equal(got, np.zeros(4))


def test_a_flat_foreground_gives_finite_statistics():
    """No steps, no curvature, no spread: each log falls back to log(1e-6), never NaN."""
    got = image_statistics(rgb(np.full((32, 32), 100)))
    np.testing.assert_allclose(got, [LOG_EPS, LOG_EPS, 1.0, LOG_EPS], rtol=1e-7)  # computed in float32


def test_statistics_read_the_first_channel():
    i, j = np.mgrid[:48, :48]
    img = rgb(np.where((i - 24) ** 2 + (j - 24) ** 2 < 400, 80 + (i * 5 + j * 11) % 60, 0))
    img[..., 1] = 0  # a second channel that is all background
    img[..., 2] = 200
    got = image_statistics(img)
    np.testing.assert_allclose(got, literal_statistics(img), rtol=1e-5)
    assert got[2] > 0.4


@pytest.mark.parametrize("flat_side", ["left", "right"])
def test_noise_needs_both_neighbour_sets_above_std_1(flat_side):
    """The noise rule compares each pixel with its right neighbour: the left set (all but the last column) and
    the right set (all but the first). A checkerboard of 99/101 has spread exactly 1; when only the last (or
    first) column swings wider, one set's spread is above 1 and the other's exactly 1: not noise."""
    i, j = np.mgrid[:112, :112]
    half = np.where((i + j) % 2, 101, 99)
    edge = -1 if flat_side == "left" else 0  # the column only the other set contains
    half[:, edge] = np.where(i[:, 0] % 2, 110, 90)
    gray = half.astype(np.float32)
    a, b = gray[:, :-1].ravel(), gray[:, 1:].ravel()
    stds = (a.std(), b.std()) if flat_side == "left" else (b.std(), a.std())
    assert stds[0] == 1.0 and stds[1] > 1.0
    assert float(np.corrcoef(a, b)[0, 1]) < 0.25  # the correlation alone would call it noise
    img = np.repeat(np.repeat(rgb(half), 2, 0), 2, 1)
    assert not [r for r in image_checks(img) if r.startswith("noise")]


# -- the feature detector's edges ----------------------------------------------------------------------------------
def detector(**kw) -> FeatureDetector:
    args = dict(means=np.array([[0.0, 0.0, 0.0], [4.0, 4.0, 4.0]], np.float32), basis=np.eye(3)[:, :2],
                variances=np.array([1.0, 2.0]), residual_variance=0.5, threshold=3.0, card=CARD)
    return FeatureDetector(**{**args, **kw})


def image_stats_of(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    stats = np.stack([image_statistics(x) for x in images])
    return stats.mean(0) + 0.1, np.eye(4) * 2.0


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    i, j = np.mgrid[:224, :224]
    disc = ((i - 112) ** 2 + (j - 112) ** 2 < 80 ** 2)
    return np.stack([rgb(np.where(disc, 60 + (i * k + j) % 90, 0)) for k in (3, 5)])


def test_image_statistics_with_weight_zero_do_not_count(images):
    mean, precision = image_stats_of(images)
    feats = np.array([[1.0, 2.0, 3.0], [4.0, 4.0, 9.0]], np.float32)
    plain = detector()
    off = detector(image_mean=mean, image_precision=precision, image_weight=0.0)
    np.testing.assert_array_equal(off.image_distance2(images), np.zeros(2))
    np.testing.assert_array_equal(off.score(feats), plain.score(feats))  # no images needed either
    on = detector(image_mean=mean, image_precision=precision, image_weight=0.5)
    assert (on.image_distance2(images) > 0).all()
    with pytest.raises(ValueError, match=r"^these statistics include image statistics: pass the images too$"):
        on.score(feats)


def test_a_full_rank_basis_is_usable():
    """k = F principal directions (nothing left to the residual variance) is a valid, if unusual, fit."""
    full = detector(basis=np.eye(3), variances=np.array([1.0, 2.0, 4.0]))
    assert full.problem() is None
    x = np.array([[1.0, 2.0, 2.0]])
    assert full.feature_distance2(x)[0] == pytest.approx(1 / 1 + 4 / 2 + 4 / 4)


@pytest.mark.parametrize("change, problem", [
    ({"variances": np.array([1.0, 0.0])}, "variances not all finite and positive"),
    ({"basis": np.eye(3)[:, :2].ravel()}, "basis (6,) and variances (2,) do not fit means (2, 3)"),
    ({"image_mean": np.zeros(4), "image_precision": np.eye(3), "image_weight": 0.5},
     "image mean (4,) and precision (3, 3), not (4,) and (4, 4)"),
])
def test_problems_are_named_not_raised(change, problem):
    assert detector(**change).problem() == problem


def test_saving_into_an_existing_folder_replaces_the_files(tmp_path, images):
    stem = tmp_path / "tumor" / STATS_STEM
    detector().save(stem)
    mean, precision = image_stats_of(images)
    second = detector(threshold=7.5, image_mean=mean.astype(np.float32), image_precision=precision.astype(np.float32),
                      image_weight=0.25)
    second.save(stem)  # the folder exists now
    got = FeatureDetector.load(stem)
    assert got.threshold == 7.5 and got.image_weight == 0.25
    arrays = load_file(str(stem.with_suffix(".safetensors")))
    # the image statistics' precision is ill-conditioned in practice: stored in float64 whatever came in
    assert arrays["image_mean"].dtype == np.float64 and arrays["image_precision"].dtype == np.float64
    np.testing.assert_array_equal(arrays["image_mean"], mean.astype(np.float32).astype(np.float64))


def test_a_distance_that_cannot_be_computed_flags():
    """NaN features (a broken forward pass) score infinitely far: above any threshold, never passed."""
    scores = detector().score(np.array([[np.nan, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert scores[0] == np.inf and scores[0] > detector().threshold
    assert scores[1] == 0.0


def test_a_foreground_only_on_the_frame_has_no_curvature():
    """Every foreground pixel on the outermost rows and columns: no curvature is measured (0, not NaN)."""
    gray = np.zeros((30, 30), np.int32)
    gray[[0, -1], :] = 100 + np.arange(30) % 7
    gray[:, [0, -1]] = 120
    img = rgb(gray)
    got = image_statistics(img)
    np.testing.assert_allclose(got, literal_statistics(img), rtol=1e-5)
    assert got[1] == pytest.approx(LOG_EPS) and got[0] > LOG_EPS + 1
