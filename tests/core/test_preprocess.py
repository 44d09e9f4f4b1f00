"""Pre-processing accepts any JPEG/PNG flavour and always yields 224x224x3 uint8 (the head crop itself is
tested in test_head_crop.py; here the conversion to 8-bit RGB before it)."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from diseaseid.data.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageDecodeError,
    as_uint8_rgb,
    decode_image,
    open_image,
    to_uint8_rgb,
)
from diseaseid.data.tensors import denormalize, normalize
from tests.helpers import png_bytes


def gradient(h: int, w: int) -> np.ndarray:
    return np.add.outer(np.arange(h), np.arange(w)).astype(np.float64)


def test_16bit_png_uses_its_full_range():
    arr = (gradient(60, 80) / gradient(60, 80).max() * 4000).astype(np.uint16)  # 12-bit MRI-like values
    data = png_bytes(Image.fromarray(arr))
    assert decode_image(data).shape == (224, 224, 3)
    out = as_uint8_rgb(open_image(data))
    assert out.shape == (60, 80, 3) and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255
    assert np.array_equal(out[..., 0], out[..., 1])


def test_rgba_is_composited_over_black():
    rgba = np.zeros((50, 50, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, :25, 3] = 255  # left half opaque, right half transparent
    out = as_uint8_rgb(open_image(png_bytes(Image.fromarray(rgba, "RGBA"))))
    assert (out[:, :25] == 200).all() and out[:, 25:].max() == 0


def test_one_pixel_wide_image():
    data = png_bytes(Image.fromarray((np.arange(300) % 256).astype(np.uint8).reshape(300, 1), "L"))
    assert decode_image(data).shape == (224, 224, 3)
    out = as_uint8_rgb(open_image(data))
    assert out.shape == (300, 1, 3) and np.array_equal(out[:, 0, 0], np.arange(300) % 256)


def test_grayscale_and_palette_and_jpeg():
    """Palette and CMYK versions of a gray slice decode to that slice's values, not just to the right shape."""
    gray = Image.fromarray((gradient(100, 120) % 256).astype(np.uint8), "L")
    reference = decode_image(png_bytes(gray)).astype(int)
    assert np.array_equal(reference[..., 0], reference[..., 2]) and reference.std() > 30
    # a palette whose indices are not the gray levels (index i is gray 255 - i): decoding must look them up
    palette = Image.fromarray(255 - np.asarray(gray), "L")
    palette.putpalette([v for i in range(256) for v in (255 - i,) * 3])
    for img, tolerance in ((palette, 0), (gray.convert("CMYK"), 4)):
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=95) if img.mode == "CMYK" else img.save(buf, format="PNG")
        out = decode_image(buf.getvalue())
        assert out.shape == (224, 224, 3) and out.dtype == np.uint8
        assert np.abs(out.astype(int) - reference).mean() <= tolerance, img.mode
        assert np.abs(out.astype(int) - reference).max() <= 8 * tolerance + 1, img.mode


def test_arrays_of_any_dtype():
    for arr in (np.random.rand(30, 40), np.random.randint(0, 65535, (30, 40, 1)).astype(np.uint16),
                np.random.randint(0, 255, (30, 40, 3)).astype(np.uint8)):
        assert to_uint8_rgb(arr).shape == (224, 224, 3)


def test_uint16_and_float_arrays_are_scaled_by_their_own_range():
    """224 x 224 (no resize): out = round((x - min) * 255 / (max - min)), the same in every channel."""
    rng = np.random.default_rng(0)
    arr = rng.integers(1000, 5001, (224, 224)).astype(np.uint16)
    arr[0, 0], arr[0, 1] = 1000, 5000
    expected = np.floor((arr.astype(np.float64) - 1000) * 255 / 4000 + 0.5).astype(np.uint8)
    for x in (arr, arr[..., None]):
        out = as_uint8_rgb(x)
        for ch in range(3):
            assert np.array_equal(out[..., ch], expected)
    f = (arr.astype(np.float64) - 3000) / 777.0  # negative and positive floats
    f[5, 5], f[6, 6], f[7, 7] = np.nan, np.inf, -np.inf  # non-finite pixels take the minimum (black)
    out = as_uint8_rgb(f)[..., 0]
    mask = np.isfinite(f)
    assert np.abs(out[mask].astype(int) - expected[mask].astype(int)).max() <= 1
    assert out[5, 5] == out[6, 6] == out[7, 7] == 0
    assert np.array_equal(to_uint8_rgb(np.full((224, 224), 7, np.uint16)), np.zeros((224, 224, 3), np.uint8))


@pytest.mark.parametrize("data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 50])
def test_garbage_raises_clear_error(data):
    with pytest.raises(ImageDecodeError):
        decode_image(data)


def test_decompression_bomb_is_refused_before_decoding():
    img = Image.new("L", (9000, 9000))  # 81 Mpx of zeros compresses to a few kB
    with pytest.raises(ImageDecodeError, match="over the limit"):
        decode_image(png_bytes(img, optimize=False))


def test_normalize_roundtrip_and_statistics():
    img = np.full((224, 224, 3), 128, np.uint8)
    x = normalize(img)
    assert x.shape == (1, 3, 224, 224)
    expected = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(x[0, :, 0, 0], expected, atol=1e-6)
    assert np.array_equal(denormalize(x)[0], img)


def test_real_fixture_slices(fixtures_dir):
    for path in sorted(fixtures_dir.glob("*/*/*.jpg"))[:6]:
        out = decode_image(path)
        assert out.shape == (224, 224, 3) and out.std() > 5
