"""Overlays and the panel: valid PNGs of the promised sizes, colours that mean what the legend says."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from diseaseid.explain.render import (
    OVERLAY_SIZE,
    compact_png,
    gradcam_overlay_png,
    gradcam_rgb,
    lrp_overlay_png,
    lrp_rgb,
    lrp_scale,
    panel_png,
)

rng = np.random.default_rng(0)
SLICE = rng.integers(60, 200, (224, 224, 3), dtype=np.uint8)


def decode(png: bytes) -> np.ndarray:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_overlays_are_pngs_of_the_requested_size():
    cam = rng.random((224, 224)).astype(np.float32)
    rel = rng.normal(size=(224, 224)).astype(np.float32)
    assert decode(gradcam_overlay_png(SLICE, cam)).shape == (OVERLAY_SIZE, OVERLAY_SIZE, 3)
    assert decode(lrp_overlay_png(SLICE, rel, size=224)).shape == (224, 224, 3)


def test_cold_gradcam_and_zero_relevance_leave_the_gray_slice():
    gray = np.round(SLICE @ np.array([0.299, 0.587, 0.114])).astype(np.int64)
    out = gradcam_rgb(SLICE, np.zeros((224, 224), np.float32)).astype(np.int64)
    assert np.abs(out - gray[..., None]).max() <= 1
    out = lrp_rgb(SLICE, np.zeros((224, 224), np.float32)).astype(np.int64)
    assert np.abs(out - gray[..., None]).max() <= 1


def test_lrp_is_red_for_positive_and_blue_for_negative_on_a_symmetric_scale():
    rel = np.zeros((224, 224), np.float32)
    rel[:, :100] = 1.0
    rel[:, 124:] = -1.0
    out = lrp_rgb(np.full((224, 224, 3), 128, np.uint8), rel).astype(int)
    left, right = out[:, :100].mean((0, 1)), out[:, 124:].mean((0, 1))
    assert left[0] > left[2] + 50  # red
    assert right[2] > right[0] + 50  # blue
    assert abs((left[0] - 128) - (right[2] - 128)) <= 2  # equal magnitude, equal intensity
    assert lrp_scale(rel) == pytest.approx(1.0)


def test_hot_gradcam_is_coloured():
    out = gradcam_rgb(np.full((224, 224, 3), 128, np.uint8), np.ones((224, 224), np.float32)).astype(int)
    assert out.std(axis=2).mean() > 20  # not gray any more


def test_maps_of_another_size_are_resized():
    out = gradcam_rgb(SLICE, rng.random((7, 7)).astype(np.float32))
    assert out.shape == (224, 224, 3)


def test_panel_fits_telegram_and_takes_any_title():
    png = panel_png(SLICE, rng.random((224, 224)), rng.normal(size=(224, 224)),
                    "Глиома (Glioma): 87% — tumor/student:convnet1, a long title that has to wrap " * 2)
    img = decode(png)
    assert img.shape[1] <= 1280 and img.shape[1] >= 1200
    assert 400 <= img.shape[0] <= 800
    two = decode(panel_png(SLICE, rng.random((224, 224)), None, "Grad-CAM only"))
    assert two.shape[1] < img.shape[1]


def test_compact_png_is_smaller_and_looks_the_same():
    png = panel_png(SLICE, rng.random((224, 224)), rng.normal(size=(224, 224)), "x")
    small = compact_png(png)
    assert len(small) < len(png)
    a, b = decode(png).astype(int), decode(small).astype(int)
    assert a.shape == b.shape and np.abs(a - b).mean() < 8


def test_grayscale_input_and_non_finite_maps():
    gray = SLICE[..., 0]
    cam = np.full((224, 224), np.nan, np.float32)
    rel = np.full((224, 224), np.inf, np.float32)
    assert decode(panel_png(gray, cam, rel, "x")).ndim == 3


def test_non_finite_map_pixels_are_drawn_as_their_nearest_finite_meaning():
    """NaN is no evidence (the gray slice), +inf the hottest / most positive colour, -inf the coldest / most
    negative; every other pixel looks as it would in the finite map."""
    cam = rng.random((224, 224)).astype(np.float32)
    bad = cam.copy()
    bad[10, 10:20], bad[20, 10:20], bad[30, 10:20] = np.nan, np.inf, -np.inf
    ref = cam.copy()
    ref[10, 10:20], ref[20, 10:20], ref[30, 10:20] = 0.0, 1.0, 0.0
    assert np.array_equal(gradcam_rgb(SLICE, bad), gradcam_rgb(SLICE, ref))
    rel = rng.normal(size=(224, 224)).astype(np.float32)
    bad = rel.copy()
    bad[10, 10:20], bad[20, 10:20], bad[30, 10:20] = np.nan, np.inf, -np.inf
    ref = rel.copy()
    ref[10, 10:20], ref[20, 10:20], ref[30, 10:20] = 0.0, 1e30, -1e30
    assert lrp_scale(bad) == pytest.approx(lrp_scale(ref))
    out = lrp_rgb(SLICE, bad)
    assert np.array_equal(out, lrp_rgb(SLICE, ref))
    gray = np.round(SLICE @ np.array([0.299, 0.587, 0.114])).astype(int)
    assert np.abs(out[10, 10:20].astype(int) - gray[10, 10:20, None]).max() <= 1  # NaN: untouched slice
    assert (out[20, 10:20, 0] > out[20, 10:20, 2] + 50).all()  # +inf: red
    assert (out[30, 10:20, 2] > out[30, 10:20, 0] + 50).all()  # -inf: blue
    all_nan = np.full((224, 224), np.nan, np.float32)
    assert np.array_equal(gradcam_rgb(SLICE, all_nan), gradcam_rgb(SLICE, np.zeros((224, 224), np.float32)))
    assert np.array_equal(lrp_rgb(SLICE, all_nan), lrp_rgb(SLICE, np.zeros((224, 224), np.float32)))
