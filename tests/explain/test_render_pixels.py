"""The report's pictures, pixel for pixel, against a transcription of the rendering they replaced (each overlay
looked up in the blend table by two indices and drawn twice, once alone and once for the panel; the panel composed
by PIL under its title and captions): the faster rendering (packed lookup, each overlay drawn once, the panel
composed as arrays, its captions deflated once) must draw the same pixels, on the fixture slices with the shipped
student's own maps (both upscaled by OpenCV's bicubic, which replaced PIL's: test_render_resize.py). And the PNG
writer's two paths (one stream; rows followed by a pre-deflated tail) decode to the pictures they were given, with
ISA-L and with plain zlib."""
from __future__ import annotations

import io
import struct
import textwrap
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from diseaseid.data.preprocess import decode_image
from diseaseid.explain import render
from diseaseid.explain.report import explain_slice


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def scanlines(png: bytes) -> bytes:
    """The IDAT's data inflated by zlib, which checks the stream's Adler-32 (a PNG decoder may stop before it)."""
    pos, idat = 8, b""
    while pos < len(png):
        (length,), tag = struct.unpack(">I", png[pos:pos + 4]), png[pos + 4:pos + 8]
        data = png[pos + 8:pos + 8 + length]
        assert struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])[0] == zlib.crc32(tag + data)
        idat += data if tag == b"IDAT" else b""
        pos += 12 + length
    return zlib.decompress(idat)


# -- the previous rendering, transcribed ---------------------------------------------------------------------------
def old_gradcam_rgb(image, cam):
    gray = render.gray_levels(image)
    c = np.clip(np.nan_to_num(render._fit(cam, gray.shape)), 0.0, 1.0)
    return render.blend_table("turbo", render.CAM_ALPHA, False)[(c * render.LEVELS).astype(np.uint16), gray]


def old_lrp_rgb(image, relevance):
    gray = render.gray_levels(image)
    r = np.nan_to_num(render._fit(relevance, gray.shape))
    v = np.clip(r / render.lrp_scale(r), -1.0, 1.0)
    return render.blend_table("bwr", render.LRP_ALPHA, True)[
        ((v + 1.0) * 0.5 * render.LEVELS).astype(np.uint16), gray]


def old_resized(rgb, side):
    """The resampler the renderer uses, OpenCV's bicubic (tests/explain/test_render_resize.py holds it to PIL's,
    which drew these pictures before), so that everything else is checked here pixel for pixel."""
    rgb = np.ascontiguousarray(rgb)
    return Image.fromarray(rgb if rgb.shape[:2] == (side, side)
                           else cv2.resize(rgb, (side, side), interpolation=cv2.INTER_CUBIC))


def old_panel(image, cam, relevance, title, original) -> np.ndarray:
    gap, tile = render.GAP, render.TILE
    tiles = [(original, render.gray_levels(image), None)]
    if cam is not None:
        tiles.append(("Grad-CAM", old_gradcam_rgb(image, cam), ("turbo", "low", "high")))
    if relevance is not None:
        tiles.append(("LRP", old_lrp_rgb(image, relevance), ("bwr", "against", "for")))
    width = gap + len(tiles) * (tile + gap)
    lines = textwrap.wrap(title, width=max(20, int(width / 17))) or [""]
    title_h = gap + 38 * len(lines)
    strip = Image.new("RGB", (width, 34 + 44 + gap), render.BACKGROUND)
    draw = ImageDraw.Draw(strip)
    for i, (caption, _, legend) in enumerate(tiles):
        x = gap + i * (tile + gap)
        draw.text((x + tile // 2, 6), caption, font=render.font(24), fill=render.TEXT, anchor="ma")
        if legend:
            render._legend(strip, x + 60, 40, tile - 120, *legend)
    panel = Image.new("RGB", (width, title_h + gap + tile + strip.height), render.BACKGROUND)
    draw = ImageDraw.Draw(panel)
    for i, line in enumerate(lines):
        draw.text((width // 2, gap + 38 * i), line, font=render.font(30), fill=render.TEXT, anchor="ma")
    top = title_h + gap
    for i, (_, rgb, _) in enumerate(tiles):
        panel.paste(old_resized(rgb, tile), (gap + i * (tile + gap), top))
    panel.paste(strip, (0, top + tile))
    return np.asarray(panel.convert("RGB"))


# -- the report's files ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def student(shipped):
    return shipped("tumor", "student")


def slices(fixtures_dir):
    paths = [sorted((fixtures_dir / "tumor" / kind).glob("*.jpg"))[0] for kind in ("glioma", "meningioma")]
    return [decode_image(p) for p in paths]


@pytest.mark.parametrize("which", [0, 1, "colour"])
def test_report_pictures_are_the_previous_renderings_pixels(student, fixtures_dir, which):
    if which == "colour":  # channels that disagree: the luma path of gray_levels
        image = np.random.default_rng(3).integers(0, 256, (224, 224, 3), dtype=np.uint8)
        target = 2
    else:
        image, target = slices(fixtures_dir)[which], None
    report = explain_slice(student, image, target=target)
    cam, rel = report.maps["gradcam"], report.maps["lrp"]
    assert np.array_equal(decode(report.files["gradcam.png"]),
                          np.asarray(old_resized(old_gradcam_rgb(image, cam), render.OVERLAY_SIZE)))
    assert np.array_equal(decode(report.files["lrp.png"]),
                          np.asarray(old_resized(old_lrp_rgb(image, rel), render.OVERLAY_SIZE)))
    original = "MRI slice" if report.prediction.is_diagnosis else "Input image"
    assert np.array_equal(decode(report.files["panel.png"]), old_panel(image, cam, rel, report.title, original))


def test_panels_with_fewer_tiles_and_long_titles_are_the_previous_pixels(fixtures_dir):
    image = slices(fixtures_dir)[0]
    rng = np.random.default_rng(5)
    cam = rng.random((14, 14)).astype(np.float32)  # resized to the slice, as a coarse Grad-CAM is
    rel = (rng.normal(size=(224, 224)) * (rng.random((224, 224)) < 0.3)).astype(np.float32)
    long = "Глиома (Glioma): 87% — tumor/student:convnet1, a long title that has to wrap " * 2
    for c, r, title in ((cam, rel, long), (cam, None, "Grad-CAM only"), (None, rel, "x"), (None, None, "")):
        assert np.array_equal(decode(render.panel_png(image, c, r, title)), old_panel(image, c, r, title, "MRI slice"))
    # the overlays handed in are the ones the panel would draw itself
    drawn = {"gradcam": render.gradcam_rgb(image, cam), "lrp": render.lrp_rgb(image, rel)}
    assert render.panel_png(image, cam, rel, long, rgb=drawn) == render.panel_png(image, cam, rel, long)


# -- the PNG writer -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("deflate", ["isal", "zlib"])
def test_png_with_a_pre_deflated_tail_decodes_to_both_parts(monkeypatch, deflate):
    if deflate == "zlib":
        monkeypatch.setattr(render, "_zlib", lambda: zlib)
    else:
        pytest.importorskip("isal")
    rng = np.random.default_rng(11)
    for head_h, tail_h, width in ((1, 1, 1), (5, 3, 7), (300, 94, 1264)):
        head = rng.integers(0, 256, (head_h, width, 3), dtype=np.uint8)
        head[: head_h // 2] = 17  # flat rows and noisy ones
        tail = np.linspace(0, 255, tail_h * width * 3).reshape(tail_h, width, 3).astype(np.uint8)
        png = render._png_with_tail(head, render._Tail(tail))
        assert np.array_equal(decode(png), np.concatenate([head, tail]))
        assert len(scanlines(png)) == (head_h + tail_h) * (width * 3 + 1)
        assert np.array_equal(decode(render.png_bytes(head)), head)
    with pytest.raises(ValueError):
        render._png_with_tail(head, render._Tail(tail[:, :-1]))


# -- the overlays as PIL images -------------------------------------------------------------------------------------
def test_blends_are_rgb_images_of_the_previous_overlays(fixtures_dir):
    image = slices(fixtures_dir)[1]
    rng = np.random.default_rng(7)
    cam = rng.random((224, 224)).astype(np.float32)
    rel = rng.normal(size=(224, 224)).astype(np.float32)
    gray = render.gray_levels(image)
    for method, old, arrays, heatmap in (("gradcam", old_gradcam_rgb, render.gradcam_rgb, cam),
                                         ("lrp", old_lrp_rgb, render.lrp_rgb, rel)):
        drawn = render.BLENDS[method](gray, heatmap)
        # three bands: an "RGBX" image (the looked-up words mapped as they are) is resized as four, a fifth slower
        assert drawn.mode == "RGB" and drawn.size == (224, 224)
        assert np.array_equal(np.asarray(drawn), old(image, heatmap))
        array = arrays(image, heatmap)
        assert array.shape == (224, 224, 3) and array.flags.writeable and np.array_equal(array, old(image, heatmap))
        assert render.overlay_png(drawn) == render.overlay_png(array)
        assert np.array_equal(decode(render.overlay_png(drawn, 300)), np.asarray(old_resized(old(image, heatmap), 300)))
