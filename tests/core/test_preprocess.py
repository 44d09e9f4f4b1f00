"""Pre-processing accepts any JPEG/PNG flavour and always yields 224x224x3 uint8."""
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
    decode_image,
    denormalize,
    normalize,
    to_uint8_rgb,
)


def png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def gradient(h: int, w: int) -> np.ndarray:
    return np.add.outer(np.arange(h), np.arange(w)).astype(np.float64)


def test_16bit_png_uses_its_full_range():
    arr = (gradient(60, 80) / gradient(60, 80).max() * 4000).astype(np.uint16)  # 12-bit MRI-like values
    out = decode_image(png_bytes(Image.fromarray(arr)))
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255
    assert np.array_equal(out[..., 0], out[..., 1])


def test_rgba_is_composited_over_black():
    rgba = np.zeros((50, 50, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, :25, 3] = 255  # left half opaque, right half transparent
    out = decode_image(png_bytes(Image.fromarray(rgba, "RGBA")))
    assert out[:, :100].mean() > 190 and out[:, 130:].max() == 0


def test_one_pixel_wide_image():
    out = decode_image(png_bytes(Image.fromarray((np.arange(300) % 256).astype(np.uint8).reshape(300, 1), "L")))
    assert out.shape == (224, 224, 3)
    assert np.all(out[:, 0] == out[:, -1])  # stretched horizontally


def test_grayscale_and_palette_and_jpeg():
    gray = Image.fromarray((gradient(100, 120) % 256).astype(np.uint8), "L")
    for img in (gray, gray.convert("P"), gray.convert("CMYK")):
        buf = io.BytesIO()
        img.save(buf, format="JPEG" if img.mode == "CMYK" else "PNG")
        out = decode_image(buf.getvalue())
        assert out.shape == (224, 224, 3) and out.dtype == np.uint8


def test_arrays_of_any_dtype():
    for arr in (np.random.rand(30, 40), np.random.randint(0, 65535, (30, 40, 1)).astype(np.uint16),
                np.random.randint(0, 255, (30, 40, 3)).astype(np.uint8)):
        assert to_uint8_rgb(arr).shape == (224, 224, 3)


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
