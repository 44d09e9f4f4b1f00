"""The table-driven rendering draws the pictures the per-pixel float blend drew: each overlay and the panel against a
literal transcription of the old code (float blend per pixel, PIL's PNG encoder), within one gray level at the
maps' 224 px (two once upscaled: bicubic's negative lobes can add up two one-level differences); and the PNG
writer round-trips every pixel."""
from __future__ import annotations

import io
import textwrap

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from diseaseid.explain import render
from diseaseid.explain.render import (
    CAM_ALPHA,
    LRP_ALPHA,
    OVERLAY_SIZE,
    colormap,
    gradcam_overlay_png,
    gradcam_rgb,
    lrp_overlay_png,
    lrp_rgb,
    lrp_scale,
    panel_png,
    png_bytes,
)

rng = np.random.default_rng(7)


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int64)


# -- the old rendering, transcribed -----------------------------------------------------------------------------
def old_gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.repeat((image.astype(np.float32) / 255.0)[..., None], 3, axis=2)


def old_blend(base, color, alpha):
    return np.clip((base * (1.0 - alpha[..., None]) + color * alpha[..., None]) * 255.0 + 0.5, 0, 255).astype(
        np.uint8)


def old_gradcam_rgb(image, cam):
    c = np.clip(np.nan_to_num(cam.astype(np.float32)), 0.0, 1.0)
    return old_blend(old_gray(image), colormap("turbo")[(c * 255).astype(np.int64)], CAM_ALPHA * c)


def old_lrp_rgb(image, relevance):
    r = np.nan_to_num(relevance.astype(np.float32))
    v = np.clip(r / lrp_scale(r), -1.0, 1.0)
    return old_blend(old_gray(image), colormap("bwr")[((v + 1.0) * 127.5).astype(np.int64)], LRP_ALPHA * np.abs(v))


def old_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def old_resized(rgb, side):
    """The renderer's resampler, OpenCV's bicubic, which replaced PIL's (test_render_resize.py holds them together)."""
    return Image.fromarray(cv2.resize(np.ascontiguousarray(rgb), (side, side), interpolation=cv2.INTER_CUBIC))


def old_panel(image, cam, relevance, title, original="MRI slice") -> bytes:
    gap, tile = render.GAP, render.TILE
    tiles = [(original, np.round(old_gray(image) * 255).astype(np.uint8), None),
             ("Grad-CAM", old_gradcam_rgb(image, cam), ("turbo", "low", "high")),
             ("LRP", old_lrp_rgb(image, relevance), ("bwr", "against", "for"))]
    width = gap + len(tiles) * (tile + gap)
    lines = textwrap.wrap(title, width=max(20, int(width / 17))) or [""]
    title_h = gap + 38 * len(lines)
    panel = Image.new("RGB", (width, title_h + gap + tile + 34 + 44 + gap), render.BACKGROUND)
    draw = ImageDraw.Draw(panel)
    for i, line in enumerate(lines):
        draw.text((width // 2, gap + 38 * i), line, font=render.font(30), fill=render.TEXT, anchor="ma")
    top = title_h + gap
    for i, (caption, rgb, legend) in enumerate(tiles):
        x = gap + i * (tile + gap)
        panel.paste(old_resized(rgb, tile), (x, top))
        draw.text((x + tile // 2, top + tile + 6), caption, font=render.font(24), fill=render.TEXT, anchor="ma")
        if legend:
            render._legend(panel, x + 60, top + tile + 40, tile - 120, *legend)
    return old_png(panel)


# -- maps as the explainers make them ------------------------------------------------------------------------------
def mri_like() -> np.ndarray:
    """A gray slice: a bright disc on black, with texture."""
    yy, xx = np.mgrid[:224, :224]
    disc = ((yy - 112) ** 2 + (xx - 112) ** 2 < 90 ** 2) * 150.0
    gray = np.clip(disc + rng.normal(0, 20, (224, 224)) * (disc > 0), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def smooth_cam() -> np.ndarray:
    yy, xx = np.mgrid[:224, :224]
    cam = np.exp(-((yy - 80) ** 2 + (xx - 140) ** 2) / (2 * 30.0 ** 2)).astype(np.float32)
    cam[:5] = 0.0
    cam[-5:] = 1.0  # both ends of the scale exactly
    return cam


def sparse_relevance() -> np.ndarray:
    rel = rng.normal(0, 1, (224, 224)).astype(np.float32) * (rng.random((224, 224)) < 0.3)
    rel[100:110, 100:110] = 50.0  # past the 99.5th percentile: clipped at +1
    rel[0, :] = 0.0
    return rel


IMAGES = {"mri": mri_like(), "colour": rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)}


@pytest.mark.parametrize("kind", IMAGES)
def test_overlays_are_the_float_blend_within_one_level(kind):
    image, cam, rel = IMAGES[kind], smooth_cam(), sparse_relevance()
    for new, old in ((gradcam_rgb(image, cam), old_gradcam_rgb(image, cam)),
                     (lrp_rgb(image, rel), old_lrp_rgb(image, rel))):
        diff = np.abs(new.astype(np.int64) - old.astype(np.int64))
        assert new.shape == old.shape and new.dtype == np.uint8
        assert diff.max() <= 1, diff.max()
        assert (diff == 0).mean() > 0.6  # mostly identical, not just close
    # where the map is zero the slice is untouched, exactly
    gray = np.round(old_gray(image) * 255).astype(np.uint8)
    assert np.array_equal(gradcam_rgb(image, cam)[:5], gray[:5])
    assert np.array_equal(lrp_rgb(image, rel)[0], gray[0])


def test_key_pixels_have_the_colormaps_colours():
    """Full Grad-CAM over black is turbo's top colour at 60%; full positive LRP over black bwr's red at 85%."""
    black = np.zeros((224, 224, 3), np.uint8)
    hot = gradcam_rgb(black, np.ones((224, 224), np.float32))[0, 0]
    assert hot.tolist() == np.floor(colormap("turbo")[255] * CAM_ALPHA * 255 + 0.5).astype(int).tolist()
    rel = np.ones((224, 224), np.float32)
    red = lrp_rgb(black, rel)[0, 0]
    assert red.tolist() == np.floor(colormap("bwr")[255] * LRP_ALPHA * 255 + 0.5).astype(int).tolist()
    blue = lrp_rgb(black, -rel)[0, 0]
    assert blue.tolist() == np.floor(colormap("bwr")[0] * LRP_ALPHA * 255 + 0.5).astype(int).tolist()


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 5, 3), (448, 448, 3), (517, 1264, 3)])
def test_png_writer_round_trips_every_pixel(shape):
    smooth = np.linspace(0, 255, shape[0] * shape[1] * 3).reshape(shape).astype(np.uint8)
    noise = rng.integers(0, 256, shape, dtype=np.uint8)
    for rgb in (smooth, noise):
        png = png_bytes(rgb)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        img = Image.open(io.BytesIO(png))
        assert img.mode == "RGB" and img.size == (shape[1], shape[0])
        assert np.array_equal(np.asarray(img), rgb)


def test_overlay_files_match_the_old_ones_and_are_no_larger():
    image, cam, rel = IMAGES["mri"], smooth_cam(), sparse_relevance()
    new = gradcam_overlay_png(image, cam)
    old = old_png(old_resized(old_gradcam_rgb(image, cam), OVERLAY_SIZE))
    diff = np.abs(decode(new) - decode(old))
    assert diff.max() <= 2 and (diff == 0).mean() > 0.9
    assert len(new) <= 1.2 * len(old)
    new = lrp_overlay_png(image, rel)
    old = old_png(old_resized(old_lrp_rgb(image, rel), OVERLAY_SIZE))
    diff = np.abs(decode(new) - decode(old))
    assert diff.max() <= 2 and (diff == 0).mean() > 0.9


@pytest.mark.parametrize("original", ["MRI slice", "Input image"])
def test_panel_matches_the_old_panel(original):
    image, cam, rel = IMAGES["mri"], smooth_cam(), sparse_relevance()
    title = "Glioma: 93% (tumor/student:lite0_stage5)"
    new, old = decode(panel_png(image, cam, rel, title, original=original)), decode(
        old_panel(image, cam, rel, title, original=original))
    assert new.shape == old.shape
    diff = np.abs(new - old)
    assert diff.max() <= 2 and (diff == 0).mean() > 0.9
    # the captions and legends, drawn once and reused, are the same in a second panel with another title
    again = decode(panel_png(image, cam, rel, "Why Meningioma? (4%; predicted Glioma)", original=original))
    assert np.array_equal(again[-90:], new[-90:])
