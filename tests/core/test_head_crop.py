"""Head-centred pre-processing (diseaseid.data.head): what lies around the head must not change the input."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from diseaseid.data.head import TARGET_LEVEL, head_crop, head_crop_with_box, head_mask
from diseaseid.data.preprocess import decode_image, to_uint8_rgb


def phantom(h: int = 200, w: int = 170, level: float = 150.0) -> np.ndarray:
    """An elliptic 'head' (a dark ventricle inside, a bright lesion on the image's left) on a black background."""
    yy, xx = np.mgrid[:h, :w]
    cy, cx = h / 2, w / 2
    img = np.zeros((h, w), np.float32)
    head = ((yy - cy) / (0.42 * h)) ** 2 + ((xx - cx) / (0.40 * w)) ** 2 <= 1
    img[head] = level
    img[((yy - cy) / 12) ** 2 + ((xx - cx) / 8) ** 2 <= 1] = 10  # a ventricle: dark, inside the head
    img[((yy - cy + 20) / 10) ** 2 + ((xx - cx + 0.22 * w) / 10) ** 2 <= 1] = 240  # a lesion on the left
    return img


def rician(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sqrt((img + rng.normal(0, sigma, img.shape)) ** 2 + rng.normal(0, sigma, img.shape) ** 2)


def test_background_is_zero_and_head_fills_the_square():
    out, box = head_crop_with_box(phantom())
    assert box.found
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert (out[:6, :6] == 0).all() and (out[-6:, -6:] == 0).all()
    rows = np.flatnonzero(out[..., 0].max(axis=1) > 0)
    # the head's height (0.84 of 200 px) spans the crop minus the 4% margins
    assert 224 * 0.88 <= rows[-1] - rows[0] + 1 <= 224 * 0.96
    # the ventricle is inside the mask: kept, not zeroed away with the background
    assert out[112, 112, 0] > 0


def test_intensity_standardised_inside_the_head():
    out = head_crop(phantom(level=150.0))
    bright = head_crop(phantom(level=150.0) * 0.5)
    # the lesion (the 99th percentile's owner here) and the tissue land on the same levels at half the intensity
    assert abs(int(np.percentile(out[out > 0], 99)) - TARGET_LEVEL) <= 2
    assert np.abs(out.astype(int) - bright.astype(int)).mean() < 1.0


def test_left_stays_left():
    out = head_crop(phantom())[..., 0]
    left, right = out[:, :112], out[:, 112:]
    assert (left >= 220).sum() > 50 and (right >= 220).sum() == 0


@pytest.mark.parametrize("sigma", [4.0, 8.0])
def test_background_noise_does_not_reach_the_network(sigma):
    clean = phantom()
    noisy = np.where(phantom() > 0, clean, rician(np.zeros_like(clean), sigma))  # noise outside the head only
    a, b = head_crop(clean), head_crop(noisy)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 0.5
    outside = head_crop(clean)[..., 0] == 0
    assert (b[..., 0][outside] == 0).mean() > 0.93  # only the edge blends in the resize


def test_grey_corners_frame_and_text_are_removed():
    clean = phantom()
    h, w = clean.shape
    yy, xx = np.mgrid[:h, :w]
    grey = clean.copy()
    grey[((yy / h - 0.5) ** 2 + (xx / w - 0.5) ** 2 > 0.25) & (clean == 0)] = 12  # dim grey corners
    framed = clean.copy()
    framed[0, :] = framed[-1, :] = framed[:, 0] = framed[:, -1] = 255  # a one-pixel frame
    framed[4:14, w - 12:w - 8] = 255  # a digit-like annotation in a corner
    ref = head_crop(clean).astype(int)
    assert np.abs(head_crop(grey).astype(int) - ref).max() == 0
    assert np.abs(head_crop(framed).astype(int) - ref).mean() < 0.5


def test_field_of_view_and_matrix_size_do_not_move_the_head():
    clean = phantom()
    padded = np.pad(clean, 24)  # a wider field of view
    big = np.asarray(Image.fromarray(clean, "F").resize((340, 400), Image.BILINEAR))  # another matrix
    ref = head_crop(clean).astype(int)
    assert np.abs(head_crop(padded).astype(int) - ref).mean() < 1.0
    assert np.abs(head_crop(big).astype(int) - ref).mean() < 3.0


def test_blank_and_tiny_images():
    out, box = head_crop_with_box(np.zeros((50, 80), np.uint8))
    assert not box.found and out.shape == (224, 224, 3) and out.max() == 0
    assert head_mask(np.zeros((3, 3), np.float32)).sum() == 0
    assert to_uint8_rgb(np.full((1, 1), 7, np.uint8)).shape == (224, 224, 3)


def test_decode_path_applies_the_head_crop(tmp_path):
    path = tmp_path / "slice.png"
    Image.fromarray(np.clip(rician(phantom(), 6.0), 0, 255).astype(np.uint8), "L").save(path)
    out = decode_image(path)
    assert out.shape == (224, 224, 3) and (out[:4, :4] == 0).all()
    assert np.abs(out.astype(int) - head_crop(phantom()).astype(int)).mean() < 6
