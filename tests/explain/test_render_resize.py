"""The overlays and the panel's tiles are upscaled by OpenCV's bicubic (``render._resized``), not PIL's, which they
had been: on a smooth picture the two must agree to within rounding (the kernels differ, Keys' a = -0.75 against
-0.5, which shows only at sharp edges), so the pictures are faithful bicubic upscales, laid out as before. And the
check is sharp enough to catch the resizing bugs one makes with OpenCV: nearest neighbour, a transposed picture,
BGR for RGB, pixel corners for pixel centres."""
from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from diseaseid.explain import render


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int64)


def pil_bicubic(picture, side: int) -> np.ndarray:
    img = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    return np.asarray(img.resize((side, side), Image.BICUBIC).convert("RGB")).astype(np.int64)


def smooth(h: int, w: int) -> np.ndarray:
    """A low-frequency RGB picture, different along each axis: red ramps left to right, green top to bottom, blue
    a product of sines with 28 and 40 px periods."""
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    blue = 127.5 + 100 * np.sin(2 * np.pi * xx / 28) * np.cos(2 * np.pi * yy / 40)
    rgb = np.stack([255 * xx / (w - 1), 255 * yy / (h - 1), blue], axis=-1)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def smooth_maps() -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:224, :224]
    cam = np.exp(-((yy - 80) ** 2 + (xx - 140) ** 2) / (2 * 30.0 ** 2)).astype(np.float32)
    rel = (np.sin(2 * np.pi * xx / 56) * np.exp(-((yy - 112) ** 2) / (2 * 50.0 ** 2))).astype(np.float32)
    return cam, rel


def assert_bicubic(ours: np.ndarray, reference: np.ndarray) -> None:
    """Measured with OpenCV's bicubic on these pictures: at most 2 levels from PIL's, 0.16-0.30 on average; the
    bounds sit just above. The planted bugs below: nearest neighbour 4-19 levels at most, 0.55-1.9 on average;
    pixel corners for centres 2-9 and 0.38-1.5; a transposed picture or BGR hundreds and tens."""
    assert ours.shape == reference.shape
    diff = np.abs(ours - reference)
    assert diff.max() <= 2, diff.max()
    assert diff.mean() <= 0.35, diff.mean()


def overlays_and_tiles():
    """Each overlay at 448 and 400 px from square and oblong pictures, and the panel's three tiles, each against
    PIL's bicubic upscale of the same picture."""
    for h, w in ((224, 224), (224, 160), (160, 224)):
        picture = smooth(h, w)
        for side in (render.OVERLAY_SIZE, 300):
            yield f"overlay {h}x{w} -> {side}", decode(render.overlay_png(picture, side)), pil_bicubic(picture, side)
    image = smooth(224, 224)
    cam, rel = smooth_maps()
    panel = decode(render.panel_png(image, cam, rel, "x"))  # one title line
    top, tile = render.GAP + 38 + render.GAP, render.TILE
    pictures = (render.gray_levels(image), render.gradcam_image(image, cam), render.lrp_image(image, rel))
    for i, (name, picture) in enumerate(zip(("slice", "Grad-CAM", "LRP"), pictures, strict=True)):
        x = render.GAP + i * (tile + render.GAP)
        yield f"panel {name} tile", panel[top:top + tile, x:x + tile], pil_bicubic(picture, tile)


def test_overlays_and_tiles_are_pils_bicubic_within_rounding():
    for name, ours, reference in overlays_and_tiles():
        try:
            assert_bicubic(ours, reference)
        except AssertionError as e:
            raise AssertionError(name) from e


def test_the_panel_tiles_sit_on_the_background():
    panel = decode(render.panel_png(smooth(224, 224), *smooth_maps(), "x"))
    top, tile, gap = render.GAP + 38 + render.GAP, render.TILE, render.GAP
    assert panel.shape[1] == gap + 3 * (tile + gap)
    for i in range(4):  # the gaps left of, between and right of the tiles
        x = i * (tile + gap)
        assert (panel[top:top + tile, x:x + gap] == render.BACKGROUND).all()
    assert (panel[top - 1, gap:-gap] == render.BACKGROUND).all()


class Planted:
    """``cv2`` as ``render`` uses it, with a resizing bug."""

    def __init__(self, resize):
        self.resize, self.INTER_CUBIC = resize, cv2.INTER_CUBIC
        self.cvtColor, self.COLOR_GRAY2RGB = cv2.cvtColor, cv2.COLOR_GRAY2RGB


def _corners(a, size, interpolation):
    """Pixel corners mapped onto each other instead of pixel centres: the picture shifted by a quarter of an input
    pixel (at 448 px)."""
    h, w = a.shape[:2]
    scale = np.float32([[size[0] / w, 0, 0], [0, size[1] / h, 0]])
    return cv2.warpAffine(a, scale, size, flags=interpolation, borderMode=cv2.BORDER_REPLICATE)


PLANTED = {
    "nearest": lambda a, size, interpolation: cv2.resize(a, size, interpolation=cv2.INTER_NEAREST),
    "transposed": lambda a, size, interpolation: cv2.resize(np.ascontiguousarray(a.swapaxes(0, 1)), size,
                                                            interpolation=interpolation),
    "bgr": lambda a, size, interpolation: np.ascontiguousarray(cv2.resize(a, size, interpolation=interpolation)[
        ..., ::-1]),
    "corners": _corners,
}


@pytest.mark.parametrize("bug", PLANTED)
def test_a_planted_resizing_bug_fails_the_check(monkeypatch, bug):
    monkeypatch.setattr(render, "_cv2", lambda: Planted(PLANTED[bug]))
    failed = []
    for name, ours, reference in overlays_and_tiles():
        try:
            assert_bicubic(ours, reference)
        except AssertionError:
            failed.append(name)
    assert len(failed) == 9, failed  # every overlay and every tile
