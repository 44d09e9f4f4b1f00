"""The upload decoder's grey shortcut (services.common.images._model_input) gives the bytes of the training path.

A grey upload goes to the head crop as its one channel instead of through ``to_uint8_rgb`` (three equal channels
that the crop checks and reads back as one); the model input must be the same array whatever the image: the
fixture slices, grey JPEGs and PNGs turned by their EXIF orientation, large ones decoded small, colour and alpha.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diseaseid.data.preprocess import to_uint8_rgb
from services.common import images
from services.common.images import decode_image_bytes
from services.common.settings import ServiceSettings

SETTINGS = ServiceSettings(api_keys="")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _training_path(data: bytes) -> np.ndarray:
    """What decode_image_bytes returned before the shortcut: the same decoding, then to_uint8_rgb."""
    with Image.open(io.BytesIO(data)) as img:
        img.draft(None, (images.DECODE_TARGET, images.DECODE_TARGET))
        img.load()
        factor = min(img.width, img.height) // images.DECODE_TARGET
        if factor >= 2 and img.mode in images._REDUCIBLE:
            img = img.reduce(factor)
        return to_uint8_rgb(img)


def _slice(h: int, w: int, seed: int) -> np.ndarray:
    """A head-like grey slice (off-centre, so that a wrong orientation moves the crop)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    head = ((yy - 0.4 * h) / (0.3 * h)) ** 2 + ((xx - 0.55 * w) / (0.25 * w)) ** 2 <= 1
    arr = np.where(head, 120 + 60 * np.sin(xx / 7.0) * np.cos(yy / 11.0), 0) + rng.integers(0, 12, (h, w))
    return np.clip(arr, 0, 255).astype(np.uint8)


def _encode(img: Image.Image, fmt: str, orientation: int | None = None) -> bytes:
    buf = io.BytesIO()
    kwargs = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _uploads():
    for path in sorted(FIXTURES.rglob("*.jpg")):
        yield path.name, path.read_bytes()
    grey = Image.fromarray(_slice(200, 170, 1), "L")
    for orientation in (None, 1, 3, 6, 8):
        for fmt in ("JPEG", "PNG"):
            yield f"grey {fmt} orientation {orientation}", _encode(grey, fmt, orientation)
    big = Image.fromarray(_slice(1100, 900, 2), "L")
    yield "large grey JPEG (draft)", _encode(big, "JPEG", 6)
    yield "large grey PNG (reduce)", _encode(big, "PNG")
    rgb = Image.merge("RGB", [grey, grey.point(lambda v: v * 4 // 5), grey.point(lambda v: v // 2 + 20)])
    yield "colour JPEG", _encode(rgb, "JPEG", 6)
    yield "grey as RGB PNG", _encode(grey.convert("RGB"), "PNG")
    yield "grey with alpha PNG", _encode(Image.merge("LA", [grey, grey.point(lambda v: 255 - v)]), "PNG")
    yield "16-bit PNG", _encode(Image.fromarray(_slice(120, 100, 3).astype(np.uint16) * 257), "PNG")
    yield "palette PNG", _encode(rgb.convert("P"), "PNG")


@pytest.mark.parametrize("name,data", list(_uploads()), ids=lambda v: v if isinstance(v, str) else "")
def test_decoded_upload_equals_the_training_path(name, data):
    decoded = decode_image_bytes(data, SETTINGS)
    want = _training_path(data)
    assert decoded.array.dtype == np.uint8 and decoded.array.shape == (224, 224, 3)
    assert decoded.array.flags.c_contiguous
    assert np.array_equal(decoded.array, want), f"{name}: {int((decoded.array != want).sum())} values differ"


def test_the_shortcut_is_taken_for_grey_and_only_for_grey(monkeypatch):
    calls = []
    real = images.to_uint8_rgb
    monkeypatch.setattr(images, "to_uint8_rgb", lambda img, *a: calls.append(img.mode) or real(img, *a))
    grey = Image.fromarray(_slice(200, 170, 4), "L")
    decode_image_bytes(_encode(grey, "JPEG", 6), SETTINGS)
    assert calls == []
    decode_image_bytes(_encode(grey.convert("RGB"), "PNG"), SETTINGS)
    assert calls == ["RGB"]


def test_orientation_moves_the_head():
    """The EXIF turn is applied (the off-centre head lands elsewhere), so the equality above is not vacuous."""
    grey = Image.fromarray(_slice(200, 170, 5), "L")
    upright = decode_image_bytes(_encode(grey, "PNG"), SETTINGS).array
    turned = decode_image_bytes(_encode(grey, "PNG", 6), SETTINGS).array
    assert not np.array_equal(upright, turned)
    assert np.array_equal(turned, to_uint8_rgb(grey.transpose(Image.Transpose.ROTATE_270)))
