"""The OOD detector's files and edges, fast and by value (no model, no shipped weights).

* ``FeatureDetector.save`` / ``load``: statistics fitted (``ood.fit.fit_statistics``) on small synthetic features
  plus the image statistics of the tumor fixture slices, saved, loaded: every array, figure and the card come
  back equal, and the loaded detector scores the same inputs identically (and as the textbook formula says).
* ``load_feature_detector``: the documented fallback (None: the energy score decides) for a missing file and
  for statistics of another detector version (with its exact warning); a clear ``ValueError`` naming the files
  for a truncated or malformed file or statistics whose shapes do not fit together.
* ``image_checks`` at the edges of each rule (equal to a limit does not flag, just past it does), with the exact
  reasons; ``detector_of`` for listed and unlisted tasks.
* ``ood.features``: the features and logits of one forward pass (batching does not change them), and the disk
  cache: a miss computes and stores, a hit reads the file and computes nothing, another version or key is
  another entry.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors.numpy import load_file, save_file

from diseaseid.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, decode_image
from diseaseid.ood import features as ood_features
from diseaseid.ood.detector import (
    DETECTOR_ROLE,
    DETECTORS,
    IMAGE_STATISTICS,
    STATS_STEM,
    FeatureDetector,
    detector_of,
    image_checks,
    image_statistics,
    load_feature_detector,
)
from diseaseid.ood.fit import _sha, fit_statistics

VERSION = "abc123def456"
CARD = {"detector": {"task": "tumor", "role": "teacher", "name": "tumor/teacher:lite0", "version": VERSION},
        "task": "tumor", "classes": ["glioma", "meningioma", "notumor", "pituitary"], "note": "fitted in a test"}
F, RANK = 12, 5


def f32(a: np.ndarray) -> np.ndarray:
    """Values a float32 file keeps exactly, as float64: the saved-and-loaded detector must then equal them."""
    return np.asarray(a, np.float32).astype(np.float64)


@pytest.fixture(scope="module")
def slices(fixtures_dir) -> np.ndarray:
    return np.stack([decode_image(p) for p in sorted((fixtures_dir / "tumor").glob("*/*.jpg"))])


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(17)
    labels = np.repeat(np.arange(4), 10)
    centres = rng.normal(0, 3, (4, F))
    scale = np.linspace(0.5, 2.0, F)
    return (centres[labels] + rng.normal(0, 1, (len(labels), F)) * scale).astype(np.float32), labels


@pytest.fixture(scope="module")
def detector(features, slices) -> FeatureDetector:
    """Fitted as ``ood.fit.fit_task`` fits (PPCA statistics, image statistics of the training slices)."""
    stats = fit_statistics(*features, rank=RANK)
    image_stats = np.stack([image_statistics(x) for x in slices])
    precision = np.linalg.inv(np.cov(image_stats.T) + 1e-6 * np.eye(len(IMAGE_STATISTICS)))
    return FeatureDetector(f32(stats["means"]), f32(stats["basis"]), f32(stats["variances"]),
                           float(stats["residual_variance"]), threshold=3.25, card=CARD,
                           image_mean=image_stats.mean(0), image_precision=precision, image_weight=0.7)


def probe(features, slices) -> tuple[np.ndarray, np.ndarray]:
    """Training features, features far from every class, and the fixture slices (one per feature row)."""
    feats = np.concatenate([features[0][:6], features[0][:3] + 8.0])
    return feats, slices[:len(feats)]


def literal_score(fd: FeatureDetector, feats: np.ndarray, images: np.ndarray) -> np.ndarray:
    """sqrt(min over class means of the full-covariance Mahalanobis distance^2 + w x image distance^2)."""
    v = fd.basis
    cov = v @ np.diag(fd.variances) @ v.T + fd.residual_variance * (np.eye(len(v)) - v @ v.T)
    out = []
    for x, img in zip(feats.astype(np.float64), images):
        d2 = min(float((x - m) @ np.linalg.solve(cov, x - m)) for m in fd.means.astype(np.float64))
        if fd.image_mean is not None:
            s = image_statistics(img) - fd.image_mean
            d2 += fd.image_weight * float(s @ fd.image_precision @ s)
        out.append(math.sqrt(d2))
    return np.array(out)


# -- save and load --------------------------------------------------------------------------------------------------
def test_saved_files_hold_the_statistics(tmp_path, detector):
    stem = tmp_path / "weights" / "tumor" / STATS_STEM  # the folders do not exist yet
    detector.save(stem)
    assert sorted(p.name for p in stem.parent.iterdir()) == ["ood.json", "ood.safetensors"]
    card = {**CARD, "threshold": 3.25, "residual_variance": detector.residual_variance, "image_weight": 0.7}
    text = stem.with_suffix(".json").read_text()
    assert json.loads(text) == card
    assert text == json.dumps(card, indent=1) + "\n"  # committed under weights/: reviewed as a diff
    arrays = load_file(str(stem.with_suffix(".safetensors")))
    assert sorted(arrays) == ["basis", "image_mean", "image_precision", "means", "variances"]
    for name in ("means", "basis", "variances"):
        assert arrays[name].dtype == np.float32
        np.testing.assert_array_equal(arrays[name], getattr(detector, name))
    for name in ("image_mean", "image_precision"):
        assert arrays[name].dtype == np.float64  # the image statistics' precision is ill-conditioned: kept exact
        np.testing.assert_array_equal(arrays[name], getattr(detector, name))
    assert detector.card == CARD  # saving does not write into the detector's own card


def test_loaded_detector_equals_the_saved_one(tmp_path, detector, features, slices):
    stem = tmp_path / "tumor" / STATS_STEM
    detector.save(stem)
    got = FeatureDetector.load(stem)
    assert got.means.dtype == np.float32 and got.basis.dtype == np.float64 and got.variances.dtype == np.float64
    for name in ("means", "basis", "variances", "image_mean", "image_precision"):
        np.testing.assert_array_equal(getattr(got, name), getattr(detector, name), err_msg=name)
    assert (got.residual_variance, got.threshold, got.image_weight) == (detector.residual_variance, 3.25, 0.7)
    assert type(got.threshold) is float and type(got.residual_variance) is float
    assert got.card == {**CARD, "threshold": 3.25, "residual_variance": detector.residual_variance,
                        "image_weight": 0.7}
    assert got.detector == CARD["detector"] and got.problem() is None
    feats, images = probe(features, slices)
    want = detector.score(feats, images)
    np.testing.assert_array_equal(got.score(feats, images), want)
    np.testing.assert_allclose(want, literal_score(detector, feats, images), rtol=1e-6)
    # the probe spans the threshold: training slices below it, shifted features far above
    assert (want[:6] < 3.25 * 3).all() and (want[6:] > want[:6].max()).all()
    assert got.reason(float(want[0]), "tumor/teacher:lite0") == (
        "unlike the brain MRI slices the tumor/teacher:lite0 detector was fitted on "
        f"(feature distance {want[0]:.1f} > 3.2)")
    with pytest.raises(ValueError, match="pass the images too"):
        got.score(feats)


def test_statistics_without_image_statistics_round_trip(tmp_path, detector, features, slices):
    plain = FeatureDetector(detector.means, detector.basis, detector.variances, detector.residual_variance,
                            threshold=4.5, card=CARD)
    stem = tmp_path / "tumor" / STATS_STEM
    plain.save(stem)
    assert sorted(load_file(str(stem.with_suffix(".safetensors")))) == ["basis", "means", "variances"]
    got = FeatureDetector.load(stem)
    assert got.image_mean is None and got.image_precision is None and got.image_weight == 0.0
    feats, images = probe(features, slices)
    np.testing.assert_array_equal(got.score(feats), plain.score(feats))  # no images needed
    np.testing.assert_allclose(got.score(feats), literal_score(plain, feats, images), rtol=1e-6)
    np.testing.assert_array_equal(got.image_distance2(images), np.zeros(len(images)))


def test_a_card_without_image_weight_loads_with_weight_zero(tmp_path, detector, features, slices):
    """Statistics written before the image statistics existed: the documented default weight 0 (the image
    statistics, if any, do not count)."""
    stem = tmp_path / "tumor" / STATS_STEM
    detector.save(stem)
    card = json.loads(stem.with_suffix(".json").read_text())
    del card["image_weight"]
    stem.with_suffix(".json").write_text(json.dumps(card))
    got = FeatureDetector.load(stem)
    assert got.image_weight == 0.0
    feats, images = probe(features, slices)
    np.testing.assert_array_equal(got.score(feats), np.sqrt(detector.feature_distance2(feats)))


# -- load_feature_detector: fallback and errors ---------------------------------------------------------------------
def test_load_feature_detector_reads_the_tasks_statistics(tmp_path, detector, features, slices, caplog):
    detector.save(tmp_path / "tumor" / STATS_STEM)
    with caplog.at_level(logging.DEBUG, logger="diseaseid.ood.detector"):
        got = load_feature_detector("tumor", tmp_path, VERSION)
        assert load_feature_detector("dementia", tmp_path, VERSION) is None  # none there: the energy decides
    assert caplog.records == []  # found, or simply absent: nothing to warn about
    assert got is not None and got.detector["version"] == VERSION
    feats, images = probe(features, slices)
    np.testing.assert_array_equal(got.score(feats, images), detector.score(feats, images))


def test_statistics_of_another_detector_version_fall_back_with_a_warning(tmp_path, detector, caplog):
    stem = tmp_path / "tumor" / STATS_STEM
    detector.save(stem)
    with caplog.at_level(logging.WARNING, logger="diseaseid.ood.detector"):
        assert load_feature_detector("tumor", tmp_path, "0123456789ab") is None
    assert [(r.name, r.levelno) for r in caplog.records] == [("diseaseid.ood.detector", logging.WARNING)]
    assert caplog.records[0].getMessage() == (
        f"OOD statistics {stem} were fitted on detector version {VERSION}, not the shipped 0123456789ab: "
        "ignored; rerun `python -m diseaseid ood-fit --task tumor`")


def test_a_missing_statistics_file(tmp_path, detector):
    stem = tmp_path / "tumor" / STATS_STEM
    detector.save(stem)
    stem.with_suffix(".safetensors").unlink()  # half a fit shipped: an error, not a silent fallback
    with pytest.raises(FileNotFoundError, match="ood.safetensors"):
        load_feature_detector("tumor", tmp_path, VERSION)
    stem.with_suffix(".json").unlink()
    assert load_feature_detector("tumor", tmp_path, VERSION) is None  # nothing shipped: the energy decides
    with pytest.raises(FileNotFoundError, match="ood.json"):
        FeatureDetector.load(stem)


def _rewrite_json(stem, change):
    card = json.loads(stem.with_suffix(".json").read_text())
    change(card)
    stem.with_suffix(".json").write_text(json.dumps(card))


def _rewrite_arrays(stem, change):
    arrays = load_file(str(stem.with_suffix(".safetensors")))
    change(arrays)
    save_file(arrays, str(stem.with_suffix(".safetensors")))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


MALFORMED = {
    # unreadable files
    "json truncated": (lambda s: _truncate(s.with_suffix(".json")), r"unreadable \(JSONDecodeError"),
    "json not an object": (lambda s: s.with_suffix(".json").write_text("[1, 2]"), r"unreadable \(TypeError"),
    "threshold missing": (lambda s: _rewrite_json(s, lambda c: c.pop("threshold")),
                          r"unreadable \(KeyError: 'threshold'\)"),
    "threshold not a number": (lambda s: _rewrite_json(s, lambda c: c.update(threshold="high")),
                               r"unreadable \(ValueError"),
    "safetensors truncated": (lambda s: _truncate(s.with_suffix(".safetensors")), r"unreadable \(SafetensorError"),
    "basis missing": (lambda s: _rewrite_arrays(s, lambda a: a.pop("basis")), r"unreadable \(KeyError: 'basis'\)"),
    # readable, but the statistics do not fit together (each was accepted before and failed, or scored
    # wrongly, only when an image came)
    "threshold NaN": (lambda s: _rewrite_json(s, lambda c: c.update(threshold=float("nan"))),
                      "unusable: threshold nan"),
    "residual variance 0": (lambda s: _rewrite_json(s, lambda c: c.update(residual_variance=0.0)),
                            "unusable: variances not all finite and positive"),
    "a variance negative": (lambda s: _rewrite_arrays(s, lambda a: a["variances"].__setitem__(0, -1.0)),
                            "unusable: variances not all finite and positive"),
    "one variance for all": (lambda s: _rewrite_arrays(s, lambda a: a.update(variances=a["variances"][:1])),
                             r"unusable: basis \(12, 5\) and variances \(1,\) do not fit means \(4, 12\)"),
    "variances one too many": (lambda s: _rewrite_arrays(s, lambda a: a.update(
        variances=np.append(a["variances"], np.float32(1.0)))), r"variances \(6,\) do not fit"),
    "basis of other features": (lambda s: _rewrite_arrays(s, lambda a: a.update(basis=a["basis"][:-1])),
                                r"unusable: basis \(11, 5\)"),
    "means flat": (lambda s: _rewrite_arrays(s, lambda a: a.update(means=a["means"].ravel())),
                   r"unusable: means of shape \(48,\), not classes x features"),
    "no classes": (lambda s: _rewrite_arrays(s, lambda a: a.update(means=a["means"][:0])),
                   r"unusable: means of shape \(0, 12\)"),
    "image precision missing": (lambda s: _rewrite_arrays(s, lambda a: a.pop("image_precision")),
                                r"unusable: image mean \(4,\) and precision \(\), not \(4,\) and \(4, 4\)"),
    "image mean of 3": (lambda s: _rewrite_arrays(s, lambda a: a.update(image_mean=a["image_mean"][:3])),
                        r"unusable: image mean \(3,\)"),
    "image weight without image statistics": (
        lambda s: _rewrite_arrays(s, lambda a: (a.pop("image_mean"), a.pop("image_precision"))),
        "unusable: image precision or weight without an image mean"),
    "image weight negative": (lambda s: _rewrite_json(s, lambda c: c.update(image_weight=-0.5)),
                              "unusable: image weight -0.5"),
    "no detector version": (lambda s: _rewrite_json(s, lambda c: c["detector"].pop("version")),
                            "unusable: no detector version"),
    "no detector": (lambda s: _rewrite_json(s, lambda c: c.pop("detector")), "unusable: no detector version"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_file_is_a_clear_error(tmp_path, detector, case):
    """A shipped file that cannot be right stops the service at load, naming the files and what is wrong; it
    neither falls back silently nor fails (or scores wrongly) at the first request."""
    stem = tmp_path / "tumor" / STATS_STEM
    detector.save(stem)
    spoil, message = MALFORMED[case]
    spoil(stem)
    with pytest.raises(ValueError, match=message) as err:
        load_feature_detector("tumor", tmp_path, VERSION)
    assert str(err.value).startswith(f"OOD statistics {stem}.json/.safetensors ")
    assert str(err.value).endswith("rerun `python -m diseaseid ood-fit`")


def test_problem_is_none_for_a_fitted_detector(detector):
    assert detector.problem() is None
    assert FeatureDetector(detector.means, detector.basis, detector.variances, 1.0, 2.0, CARD).problem() is None
    assert FeatureDetector(detector.means, detector.basis, detector.variances, 1.0, float("inf"),
                           CARD).problem() == "threshold inf"


# -- detector_of ----------------------------------------------------------------------------------------------------
def test_detector_of():
    assert DETECTORS == {"tumor": ("tumor", "student"), "dementia": ("tumor", "student")}
    assert DETECTOR_ROLE == "teacher"
    assert detector_of("tumor") == ("tumor", "student")
    assert detector_of("dementia") == ("tumor", "student")
    assert detector_of("stroke") == ("stroke", "teacher")  # a task not listed: its own teacher


# -- image_checks at the edges of each rule ---------------------------------------------------------------------------
# image_checks reads every second pixel: the images are built at 112 x 112 and each pixel doubled, so the checks
# see exactly the values written here.
COLOUR = "colour image (mean chroma {:.1f}); MRI slices are grayscale"
UNIFORM = "almost uniform image"
BRIGHT = "bright background; MRI slices have a dark background"


def full(half: np.ndarray) -> np.ndarray:
    if half.ndim == 2:
        half = np.repeat(half[..., None], 3, axis=2)
    assert half.shape == (112, 112, 3) and half.min() >= 0 and half.max() <= 255
    return np.repeat(np.repeat(half, 2, 0), 2, 1).astype(np.uint8)


def radius() -> np.ndarray:
    i, j = np.mgrid[:112, :112]
    return np.hypot(i - 55.5, j - 55.5)


def head(background: int = 0) -> np.ndarray:
    """A smooth bright disc (60..160) on a flat background: what passes every check."""
    r = radius()
    return np.where(r < 40, np.round(60 + 100 * (1 - r / 40)), background).astype(np.int32)


def coloured(gray: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Channels gray + offset, gray, gray - offset: the same gray level, chroma 2/3 x offset."""
    return np.stack([gray + offset, gray, gray - offset], axis=2)


def test_a_smooth_head_on_black_passes():
    assert image_checks(full(head())) == []


@pytest.mark.parametrize("level", [30, 31])
def test_lit_means_brighter_than_30(level):
    """A ring of colourful pixels at gray level 30 is background (not counted as lit); at 31 it is lit and
    its chroma decides. The reason quotes the larger of the two chroma means."""
    r = radius()
    ring = (r >= 40) & (r < 48)
    gray = np.where(ring, level, head())
    img = full(coloured(gray, np.where(ring, 30, 0)))  # chroma 20 on the ring, 0 elsewhere
    overall, lit = 20 * ring.mean(), 20 * ring.sum() / (ring.sum() + (r < 40).sum())
    assert overall < 6 < lit
    assert image_checks(img) == ([] if level == 30 else [COLOUR.format(lit)])


@pytest.mark.parametrize("extra", [0, 1])
def test_chroma_of_lit_pixels_above_3_flags(extra):
    """Lit pixels of chroma 2 and 4 in equal numbers: mean exactly 3, not flagged; one more at 4 flags."""
    gray = np.zeros((112, 112), np.int32)
    i, j = np.mgrid[20:92, 20:92]
    gray[20:92, 20:92] = 60 + i + j  # smooth, lit
    offset = np.zeros((112, 112), np.int32)
    offset[20:92, 20:92] = np.where((i + j) % 2, 6, 3)
    offset[20, 20] += 3 * extra  # chroma 2 -> 4
    assert image_checks(full(coloured(gray, offset))) == ([COLOUR.format(3.0)] if extra else [])


@pytest.mark.parametrize("extra", [0, 1])
def test_mean_chroma_above_6_flags_even_without_lit_pixels(extra):
    """A dark (nothing lit) image of chroma 6 everywhere is not flagged as colour; one pixel more is."""
    offset = np.full((112, 112), 9)
    offset[0, 0] += 3 * extra
    img = full(coloured(np.full((112, 112), 20), offset))
    assert image_checks(img) == ([COLOUR.format(6.0)] if extra else []) + [UNIFORM]


@pytest.mark.parametrize("right, reasons", [(8, []), (7, [UNIFORM])])
def test_uniform_below_std_4(right, reasons):
    """Two halves 0 and 8: gray std exactly 4, passes; 0 and 7 (std 3.5) is almost uniform."""
    gray = np.zeros((112, 112), np.int32)
    gray[:, 56:] = right
    assert image_checks(full(gray)) == reasons


@pytest.mark.parametrize("high, reasons", [
    (12, [UNIFORM]),  # neighbour std exactly 1: too flat to call noise
    (13, [UNIFORM, "noise-like image (neighbour correlation -1.00)"]),  # std 1.5
])
def test_noise_needs_neighbour_std_above_1(high, reasons):
    i, j = np.mgrid[:112, :112]
    assert image_checks(full(np.where((i + j) % 2, high, 10))) == reasons


def test_noise_flags_below_neighbour_correlation_0_25():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 60, (112, 112))
    smooth = (noise + np.roll(noise, 1, axis=1)) // 2  # neighbour correlation about 0.5
    for gray, flagged in ((noise, True), (smooth, False)):
        h = gray.astype(np.float32)
        corr = float(np.corrcoef(h[:, :-1].ravel(), h[:, 1:].ravel())[0, 1])
        assert (corr < 0.25) == flagged, corr
        assert [r for r in image_checks(full(gray)) if r.startswith("noise")] == (
            [f"noise-like image (neighbour correlation {corr:.2f})"] if flagged else [])


@pytest.mark.parametrize("background, reasons", [(60, []), (61, [BRIGHT])])
def test_bright_background_above_median_60(background, reasons):
    assert image_checks(full(head(background))) == reasons


def test_the_border_is_four_pixels_wide():
    """The outer four rows and columns (at half resolution) have median 50, so the image passes; the fifth
    ring is bright: a check that read a wider border would flag it."""
    gray = head()
    gray[:4], gray[-4:] = 100, 0
    gray[:56, :4] = gray[:56, -4:] = 100
    gray[56:, :4] = gray[56:, -4:] = 0
    gray[4, 4:108] = gray[107, 4:108] = 200
    gray[4:108, 4] = gray[4:108, 107] = 200
    border = np.concatenate([gray[:4].ravel(), gray[-4:].ravel(), gray[:, :4].ravel(), gray[:, -4:].ravel()])
    assert np.median(border) == 50
    assert image_checks(full(gray)) == []


# -- ood.features: one forward pass and the disk cache -----------------------------------------------------------------
W = torch.tensor([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0], [-1.0, 1.0], [2.0, 0.5], [0.0, -1.5]])


class Tiny(nn.Module):
    """timm's interface: features = per-channel mean and max of the normalised image, logits = features @ W."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward_features(self, x):
        self.calls += 1
        return x

    def forward_head(self, fmap, pre_logits=False):
        pooled = torch.cat([fmap.mean((2, 3)), fmap.amax((2, 3))], 1)
        return pooled if pre_logits else pooled @ W


def expected(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = (images.astype(np.float64) / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    feats = np.concatenate([x.mean((1, 2)), x.max((1, 2))], 1)
    return feats, feats @ W.double().numpy()


def small_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)


def test_features_and_logits_of_one_pass_in_batches():
    images = small_images(33)
    want_f, want_l = expected(images)
    for batch_size, passes in ((None, 2), (2, 17), (33, 1), (100, 1)):
        model = Tiny()
        kwargs = {} if batch_size is None else {"batch_size": batch_size}
        feats, logits = ood_features.features_and_logits(model, images, **kwargs)
        assert model.calls == passes, batch_size  # default batch 32
        assert feats.dtype == np.float32 and logits.dtype == np.float32
        assert feats.shape == (33, 6) and logits.shape == (33, 2)
        np.testing.assert_allclose(feats, want_f, atol=1e-5)
        np.testing.assert_allclose(logits, want_l, atol=1e-4)
    feats, logits = ood_features.features_and_logits(Tiny(), images[:0])
    assert feats.shape == logits.shape == (0, 0) and feats.dtype == logits.dtype == np.float32


def test_cache_path():
    assert ood_features.cache_path("v1", "tumor-train-ab") == (
        ood_features.REPO_ROOT / "runs" / "ood-features" / "v1-tumor-train-ab.npz")


def test_the_feature_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(ood_features, "REPO_ROOT", tmp_path)  # not runs/ of the working tree
    folder = tmp_path / "runs" / "ood-features"
    images = {"k1": small_images(5, 1), "k2": small_images(4, 2)}
    loads = []

    def loader(key):
        def load():
            loads.append(key)
            return images[key]
        return load

    model = Tiny()
    # a miss computes (the folders are created) and stores exactly what it returns
    feats, logits = ood_features.cached_features_and_logits(model, "v1", "k1", loader("k1"))
    assert loads == ["k1"] and model.calls == 1
    np.testing.assert_allclose(feats, expected(images["k1"])[0], atol=1e-5)
    np.testing.assert_allclose(logits, expected(images["k1"])[1], atol=1e-4)
    assert sorted(p.name for p in folder.iterdir()) == ["v1-k1.npz"]  # no temporary file left
    with np.load(folder / "v1-k1.npz") as z:
        assert sorted(z.files) == ["features", "logits"]
        np.testing.assert_array_equal(z["features"], feats)
        np.testing.assert_array_equal(z["logits"], logits)
    # a hit reads the file: no images loaded, no forward pass, the same values
    again = ood_features.cached_features_and_logits(model, "v1", "k1", loader("k1"))
    assert loads == ["k1"] and model.calls == 1
    np.testing.assert_array_equal(again[0], feats)
    np.testing.assert_array_equal(again[1], logits)
    assert again[0].dtype == np.float32
    # another key, another version: other entries (the folder exists by now)
    other = ood_features.cached_features_and_logits(model, "v1", "k2", loader("k2"))
    np.testing.assert_allclose(other[0], expected(images["k2"])[0], atol=1e-5)
    ood_features.cached_features_and_logits(model, "v2", "k1", loader("k1"))
    assert loads == ["k1", "k2", "k1"] and model.calls == 3
    assert sorted(p.name for p in folder.iterdir()) == ["v1-k1.npz", "v1-k2.npz", "v2-k1.npz"]
    # what a hit returns is the stored entry, features and logits each from their own array
    np.savez(folder / "v3-k1.npz", features=np.ones((2, 6), np.float32), logits=np.zeros((2, 2), np.float32))
    f3, l3 = ood_features.cached_features_and_logits(model, "v3", "k1", loader("k1"))
    np.testing.assert_array_equal(f3, np.ones((2, 6)))
    np.testing.assert_array_equal(l3, np.zeros((2, 2)))
    assert model.calls == 3


def test_cache_key_of_an_image_stack():
    """``ood.fit`` keys the non-MRI sets by a hash of their pixels: any changed pixel is another entry."""
    images = small_images(3)
    assert _sha(images) == hashlib.sha256(images.tobytes()).hexdigest()[:12]
    assert _sha(images.copy()) == _sha(images) and len(_sha(images)) == 12
    changed = images.copy()
    changed[2, 7, 7, 2] ^= 1
    assert _sha(changed) != _sha(images)
    flipped = np.ascontiguousarray(images[:, ::-1])
    assert _sha(images[:, ::-1]) == _sha(flipped) != _sha(images)  # a view hashes its values, not its buffer


def test_kinds_table_reads_each_tasks_card(tmp_path):
    from diseaseid.ood.fit import kinds_table

    for task, families in (("tumor", {"photo_gray": "13/14", "chart": "2/2"}), ("dementia", {"photo_gray": "14/14"})):
        (tmp_path / task).mkdir()
        card = {"non_mri": {"heldout": {"families": families}, "calibration": {"families": {"x": "1/1"}}}}
        (tmp_path / task / "ood.json").write_text(json.dumps(card))
    assert kinds_table(tmp_path).splitlines() == [
        "| kind | dementia | tumor |", "|---|---:|---:|",
        "| chart | - | 2/2 |", "| photo_gray | 14/14 | 13/14 |"]
    assert kinds_table(tmp_path, "calibration").splitlines()[2:] == ["| x | 1/1 | 1/1 |"]


def test_detector_argument():
    import argparse

    from diseaseid.cli.ood import detector_arg

    assert detector_arg("tumor/teacher") == ("tumor", "teacher")
    for bad in ("tumor", "tumor/mil", "stroke/student", "/student", "tumor/student/x"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected TASK/ROLE"):
            detector_arg(bad)
