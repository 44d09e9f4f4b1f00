"""Heatmaps drawn over the slice, as PNG bytes: legible at Telegram's photo size (panels up to 1280 px wide).

* Grad-CAM: a heat colormap (turbo) over the grayscale slice, more opaque where the map is higher, so cold
  regions
  show the anatomy untouched.
* LRP: a diverging map on a symmetric scale, red for evidence for the class and blue for evidence against,
  transparent near zero. The scale is a high percentile of |R| rather than its maximum, so a few extreme
  pixels do not wash out the rest.
* A panel: original | Grad-CAM | LRP side by side, captions, colour legends and a title (class and
  probability).

Colormaps come from matplotlib once (as 256-entry tables), and each overlay's blend of a colour over a gray level
once (``blend_table``: map level x gray level -> RGB, kept packed as 4-byte words), so drawing an overlay is one
table lookup; a report draws each overlay once for its own PNG and the panel's tile. PNGs are written here
(``png_bytes``: the "up" filter and a fast deflate), not by PIL's encoder, which spent 60-80% of the rendering time
choosing a filter per row. The panel is composed as arrays; its captions and legends, the same in every panel, are
drawn, filtered and deflated once. The pictures are upscaled bicubic by OpenCV (``_resized``), a tenth of PIL's time
(PIL's resizing had been half the rendering); what is left is mostly the PNGs' filtering and deflate.
"""
from __future__ import annotations

import io
import struct
import textwrap
import zlib
from collections.abc import Mapping
from functools import cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

OVERLAY_SIZE = 448  # single overlays are upscaled from 224 to this
TILE = 400  # panel tile side; 3 tiles + margins = 1264 px
GAP = 16
BACKGROUND = (17, 17, 17)
TEXT = (235, 235, 235)
SUBTLE = (170, 170, 170)
CAM_ALPHA = 0.6
LRP_ALPHA = 0.85
LRP_PERCENTILE = 99.5
# deflate level 1: with the "up" filter, files as small as PIL's level 1 (a Grad-CAM overlay 162 vs 169 kB) in a
# twentieth of its time with ISA-L (1.1 vs 21 ms), a half with zlib
PNG_COMPRESS_LEVEL = 1


@cache
def colormap(name: str) -> np.ndarray:
    """256 x 3 float table of a matplotlib colormap."""
    import matplotlib

    return matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32)


@cache
def font(size: int) -> ImageFont.ImageFont:
    """DejaVu Sans (shipped with matplotlib; has Cyrillic for Russian titles), else PIL's built-in font."""
    spec = find_spec("matplotlib")
    if spec and spec.submodule_search_locations:
        path = Path(spec.submodule_search_locations[0]) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def gray_levels(image: np.ndarray) -> np.ndarray:
    """H x W uint8: the slice as gray (MRI slices are gray; colour would compete with the map): its luma
    (ITU-R 601), rounded; an image whose channels agree (an MRI slice) as it is."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image if image.dtype == np.uint8 else np.clip(np.round(image), 0, 255).astype(np.uint8)
    rgb = image[..., :3]
    if rgb.dtype == np.uint8 and np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1],
                                                                                             rgb[..., 2]):
        return rgb[..., 0]
    luma = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.clip(np.round(luma), 0, 255).astype(np.uint8)


LEVELS = 4 * 255  # map levels in a blend table: 4 per colormap entry, so the colour index is ``level // 4``


@cache
def blend_table(cmap: str, alpha: float, signed: bool) -> np.ndarray:
    """(LEVELS + 1) x 256 x 3 uint8: map level k over gray level g, i.e. colour ``k // 4`` of ``cmap`` (the entry the
    per-pixel blend picked) at opacity ``alpha`` x the map's value at the level's lower end: a map c in [0, 1] is
    level ``floor(LEVELS c)``, value ``k / LEVELS``; a signed map v in [-1, 1] level ``floor(LEVELS (v + 1) / 2)``,
    value ``|2 k / LEVELS - 1|``. Zero, -1 and 1 are exact (a map of zeros leaves the slice as it is); elsewhere the
    opacity is within 0.6 / 1020 (Grad-CAM) or 0.85 / 510 (LRP) of the pixel's own, under half a gray level."""
    k = np.arange(LEVELS + 1)
    value = np.abs(2.0 * k / LEVELS - 1.0) if signed else k / LEVELS
    a = (alpha * value)[:, None, None]
    g = (np.arange(256, dtype=np.float64) / 255.0)[None, :, None]
    color = colormap(cmap).astype(np.float64)[k // 4][:, None, :]
    return np.clip((g * (1.0 - a) + color * a) * 255.0 + 0.5, 0, 255).astype(np.uint8)


@cache
def _packed_table(cmap: str, alpha: float, signed: bool) -> np.ndarray:
    """``blend_table`` as one flat uint32 per entry (R, G, B, 0 in memory order), at ``level * 256 + gray``: one
    ``take`` of 4-byte words is several times faster than numpy's two-index lookup of 3-byte rows (0.15 against
    1.1 ms for a 224 px map)."""
    table = blend_table(cmap, alpha, signed)
    packed = np.zeros(table.shape[:2] + (4,), np.uint8)
    packed[..., :3] = table
    return packed.view(np.uint32).reshape(-1)


def _levels(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> blend-table levels (uint16)."""
    return (values * LEVELS).astype(np.uint16)


def _blend(cmap: str, alpha: float, signed: bool, levels: np.ndarray, gray: np.ndarray) -> Image.Image:
    """An RGB image of ``blend_table(cmap, alpha, signed)[levels, gray]``, looked up in the packed table. The
    looked-up words go to PIL as "RGBX" (PIL keeps an RGB pixel in 4 bytes): numpy's copy of them into 3-byte
    pixels, which PIL then spread back to 4, cost 0.26 ms of the 0.35 ms of a 224 px overlay."""
    index = levels.astype(np.uint32) << 8
    index |= gray
    words = _packed_table(cmap, alpha, signed).take(index)
    # frombytes, not frombuffer: frombuffer would map the words as an "RGBX" image, which PIL resizes as 4 bands
    return Image.frombytes("RGB", (gray.shape[1], gray.shape[0]), words, "raw", "RGBX")


def _fit(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map resized (bilinear) to the image's height and width when they differ."""
    m = np.asarray(m, np.float32)
    if m.shape == shape:
        return m
    return np.asarray(Image.fromarray(m, mode="F").resize((shape[1], shape[0]), Image.BILINEAR), np.float32)


def gradcam_image(image: np.ndarray, cam: np.ndarray) -> Image.Image:
    """Grad-CAM ([0, 1]) as a heat colormap over the grayscale slice, at the slice's size."""
    gray = gray_levels(image)
    c = np.clip(np.nan_to_num(_fit(cam, gray.shape)), 0.0, 1.0)
    return _blend("turbo", CAM_ALPHA, False, _levels(c), gray)


def gradcam_rgb(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """``gradcam_image`` as H x W x 3 uint8."""
    return np.array(gradcam_image(image, cam))


def lrp_scale(relevance: np.ndarray) -> float:
    """Symmetric colour scale: a high percentile of |R| (1 when the map is all zero)."""
    mag = np.abs(np.nan_to_num(np.asarray(relevance, np.float32)))
    scale = float(np.percentile(mag, LRP_PERCENTILE)) if mag.size else 0.0
    if scale <= 0:
        scale = float(mag.max()) if mag.size else 0.0
    return scale if scale > 0 else 1.0


def lrp_image(image: np.ndarray, relevance: np.ndarray) -> Image.Image:
    """Signed LRP relevance, red for and blue against on a symmetric scale, over the slice, at its size."""
    gray = gray_levels(image)
    r = np.nan_to_num(_fit(relevance, gray.shape))
    v = np.clip(r / lrp_scale(r), -1.0, 1.0)
    return _blend("bwr", LRP_ALPHA, True, _levels((v + 1.0) * 0.5), gray)


def lrp_rgb(image: np.ndarray, relevance: np.ndarray) -> np.ndarray:
    """``lrp_image`` as H x W x 3 uint8."""
    return np.array(lrp_image(image, relevance))


def _zlib():
    """ISA-L's zlib (several times zlib's speed at the same level), else zlib."""
    try:
        from isal import isal_zlib
    except ImportError:
        return zlib
    return isal_zlib


def _deflate(data) -> bytes:
    return _zlib().compress(data, PNG_COMPRESS_LEVEL)


def _chunk(tag: bytes, *data: bytes) -> tuple[bytes, ...]:
    """A PNG chunk as pieces (its data given in pieces too), so that the file is joined, i.e. copied, once."""
    crc32 = _zlib().crc32  # ISA-L's: a twentieth of zlib's time on an IDAT of 200-500 kB
    crc = crc32(tag)
    for piece in data:
        crc = crc32(piece, crc)
    return (struct.pack(">I", sum(map(len, data))), tag, *data, struct.pack(">I", crc))


def _filtered(rgb: np.ndarray) -> np.ndarray:
    """H x (W * 3 + 1) uint8: PNG scanlines, the first row unfiltered and every other row "up"-filtered (its
    difference from the row above), which suits smooth pictures as well as PIL's per-row choice and costs one numpy
    subtraction. The first row needs no row above, so a run of rows filtered here can follow any other run."""
    h, w, _ = rgb.shape
    rows = rgb.reshape(h, w * 3)
    filtered = np.empty((h, w * 3 + 1), np.uint8)
    filtered[0, 0] = 0  # filter type "none"
    filtered[0, 1:] = rows[0]
    filtered[1:, 0] = 2  # filter type "up"
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # modulo 256, as PNG wants
    return filtered


def _png_file(width: int, height: int, *idat: bytes) -> bytes:
    """The PNG of a zlib stream (``idat``, in pieces) of scanlines."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, truecolour, deflate, no interlace
    return b"".join((b"\x89PNG\r\n\x1a\n", *_chunk(b"IHDR", header), *_chunk(b"IDAT", *idat), *_chunk(b"IEND")))


def png_bytes(rgb: np.ndarray) -> bytes:
    """H x W x 3 uint8 -> an 8-bit RGB PNG (scanlines as ``_filtered`` makes them, deflated at level 1)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    return _png_file(w, h, _deflate(_filtered(rgb)))


class _Tail:
    """The bottom rows of a picture, filtered and deflated once (a panel's captions and legends): a PNG that ends in
    them deflates only the rows above and appends these bytes. Deflate allows it: the rows above end in a sync flush
    (on a byte boundary, no match reaching into the tail), and these are a separate stream's blocks, ending in the
    final one; the zlib checksum runs over both."""

    def __init__(self, rgb: np.ndarray):
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        self.height, self.width = rgb.shape[:2]
        self.filtered = _filtered(rgb)
        z = _zlib()
        stream = z.compressobj(PNG_COMPRESS_LEVEL, z.DEFLATED, -15)  # raw deflate: no header, no checksum
        self.deflated = stream.compress(self.filtered) + stream.flush(z.Z_FINISH)


def _png_with_tail(rgb: np.ndarray, tail: _Tail) -> bytes:
    """``rgb`` with ``tail``'s rows below it, as one PNG."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    if w != tail.width:
        raise ValueError(f"a tail {tail.width} px wide under rows {w} px wide")
    z = _zlib()
    filtered = _filtered(rgb)
    stream = z.compressobj(PNG_COMPRESS_LEVEL, z.DEFLATED, -15)
    head = stream.compress(filtered), stream.flush(z.Z_SYNC_FLUSH)
    checksum = z.adler32(tail.filtered, z.adler32(filtered))
    # zlib header: deflate, 32 kB window, fastest (0x78 0x01), then both raw streams and the Adler-32 of all rows
    return _png_file(w, h + tail.height, b"\x78\x01", *head, tail.deflated, struct.pack(">I", checksum))


def compact_png(png: bytes, colors: int = 256) -> bytes:
    """The same picture as a palette PNG at the highest compression: a third of the size, for documents and
    repositories (slower to encode, so not for serving)."""
    # octree with Floyd-Steinberg dithering: median cut bands the smooth Grad-CAM gradients visibly
    img = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors, method=Image.Quantize.FASTOCTREE,
                                                              dither=Image.Dither.FLOYDSTEINBERG)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


@cache
def _cv2():
    """OpenCV on the process's thread budget, imported on first use (``diseaseid.serving.runtime.opencv_module``)."""
    from diseaseid.serving.runtime import opencv_module

    return opencv_module()


def _resized(picture: np.ndarray | Image.Image, side: int) -> np.ndarray:
    """``picture`` (RGB or grey, uint8; a PIL image of either) ``side`` px square, bicubic, as H x W x 3 or H x W
    uint8 (a grey picture stays one channel). OpenCV's bicubic (fixed point, Keys' a = -0.75) rather than PIL's
    (a = -0.5): a tenth of the time (an RGB 224 -> 448 overlay 0.2 ms against 2.1 ms), and the same picture but for
    slightly crisper edges (a fixture slice's Grad-CAM overlay: 0.4 levels from PIL's on average, 11 at most;
    tests/explain/test_render_resize.py)."""
    if isinstance(picture, Image.Image) and picture.mode not in ("RGB", "L"):
        picture = picture.convert("RGB")
    array = np.ascontiguousarray(picture, dtype=np.uint8)
    if array.shape[:2] == (side, side):
        return array
    cv2 = _cv2()
    return cv2.resize(array, (side, side), interpolation=cv2.INTER_CUBIC)


def _rgb(picture: np.ndarray) -> np.ndarray:
    """H x W x 3 of an RGB or grey H x W uint8 array."""
    if picture.ndim == 3:
        return picture
    cv2 = _cv2()
    return cv2.cvtColor(picture, cv2.COLOR_GRAY2RGB)


def overlay_png(picture: np.ndarray | Image.Image, size: int = OVERLAY_SIZE) -> bytes:
    """An overlay drawn by ``BLENDS`` (or ``gradcam_rgb``, ``lrp_rgb``), ``size`` px square, as a PNG."""
    return png_bytes(_rgb(_resized(picture, size)))


def gradcam_overlay_png(image_uint8: np.ndarray, cam: np.ndarray, size: int = OVERLAY_SIZE) -> bytes:
    """Grad-CAM ([0, 1]) as a heat colormap over the grayscale slice, ``size`` px square."""
    return overlay_png(gradcam_image(image_uint8, cam), size)


def lrp_overlay_png(image_uint8: np.ndarray, relevance: np.ndarray, size: int = OVERLAY_SIZE) -> bytes:
    """Signed LRP relevance, red positive and blue negative on a symmetric scale, over the slice."""
    return overlay_png(lrp_image(image_uint8, relevance), size)


# Each method's overlay drawing (image, map -> an RGB image at the slice's size), in the panel's order.
BLENDS = {"gradcam": gradcam_image, "lrp": lrp_image}


def _legend(panel: Image.Image, x: int, y: int, width: int, cmap: str, left: str, right: str) -> None:
    bar = (colormap(cmap)[np.linspace(0, 255, width).astype(np.int64)] * 255).astype(np.uint8)
    strip = Image.fromarray(np.repeat(bar[None], 10, axis=0))
    panel.paste(strip, (x, y))
    draw = ImageDraw.Draw(panel)
    small = font(18)
    draw.text((x, y + 14), left, font=small, fill=SUBTLE)
    draw.text((x + width, y + 14), right, font=small, fill=SUBTLE, anchor="ra")


def panel_png(image_uint8: np.ndarray, cam: np.ndarray | None, relevance: np.ndarray | None,
              title: str, original: str = "MRI slice",
              rgb: Mapping[str, np.ndarray | Image.Image] | None = None) -> bytes:
    """Original | Grad-CAM | LRP side by side under ``title`` (e.g. class and probability); a tile whose
    map is None is left out; ``original`` captions the input's tile; ``rgb``: the overlays already drawn from these
    maps (``BLENDS``, by method), so that a caller that also writes them alone draws each once. At most 1264 px
    wide."""
    rgb = rgb or {}
    tiles = [(original, gray_levels(image_uint8), None)]  # one channel: a third of the resizing
    if cam is not None:
        tiles.append(("Grad-CAM", rgb["gradcam"] if "gradcam" in rgb else gradcam_image(image_uint8, cam),
                      ("turbo", "low", "high")))
    if relevance is not None:
        tiles.append(("LRP", rgb["lrp"] if "lrp" in rgb else lrp_image(image_uint8, relevance),
                      ("bwr", "against", "for")))
    width = GAP + len(tiles) * (TILE + GAP)
    lines = textwrap.wrap(title, width=max(20, int(width / 17))) or [""]
    title_h = GAP + 38 * len(lines)
    top = title_h + GAP
    # Drawn as arrays: the title (the one part PIL draws per panel), then the tiles; the captions and legends under
    # them are the same in every panel with these tiles, drawn and deflated once (``_captions``).
    heading = Image.new("RGB", (width, top), BACKGROUND)
    draw = ImageDraw.Draw(heading)
    for i, line in enumerate(lines):
        draw.text((width // 2, GAP + 38 * i), line, font=font(30), fill=TEXT, anchor="ma")
    # Copied as rows of bytes (H x W * 3): numpy copies pixels of 3 bytes one by one, ten times slower.
    rows = np.empty((top + TILE, width * 3), np.uint8)
    rows[:top] = np.asarray(heading).reshape(top, width * 3)
    rows[top:] = _background_row(width)
    for i, (_, picture, _) in enumerate(tiles):
        x = 3 * (GAP + i * (TILE + GAP))
        rows[top:, x:x + 3 * TILE] = _rgb(_resized(picture, TILE)).reshape(TILE, 3 * TILE)
    return _png_with_tail(rows.reshape(top + TILE, width, 3),
                          _captions(tuple((caption, legend) for caption, _, legend in tiles)))


@cache
def _background_row(width: int) -> np.ndarray:
    return np.tile(np.array(BACKGROUND, np.uint8), width)


@cache
def _captions(tiles: tuple[tuple[str, tuple[str, str, str] | None], ...]) -> _Tail:
    """The strip under the tiles: each tile's caption and colour legend, filtered and deflated. The same for every
    panel with the same tiles, so drawn once."""
    width = GAP + len(tiles) * (TILE + GAP)
    strip = Image.new("RGB", (width, 34 + 44 + GAP), BACKGROUND)
    draw = ImageDraw.Draw(strip)
    for i, (caption, legend) in enumerate(tiles):
        x = GAP + i * (TILE + GAP)
        draw.text((x + TILE // 2, 6), caption, font=font(24), fill=TEXT, anchor="ma")
        if legend:
            _legend(strip, x + 60, 40, TILE - 120, *legend)
    return _Tail(np.asarray(strip))
