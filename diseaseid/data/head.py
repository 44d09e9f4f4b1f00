"""Head-centred pre-processing: the network sees the head, never the background, the padding or the corners.

A scanner's export differs from a curated training file in what lies *around* the head: background noise
(magnitude images carry Rician noise where there is no tissue), another field of view (more or less black
around the head, another matrix size or aspect ratio), a dim frame or annotation in the corners. None of it
may change an answer, so every slice goes through the same four steps, in training and in serving:

1. **Head mask** on a smoothed copy (noise is averaged away before thresholding): the largest bright region
   above a fraction of the image's bright level, closed and with its holes filled (ventricles, dark lesions
   and dark bone inside the head stay in).
2. **Crop** to the mask's bounding box plus a margin, made square around its centre (the head keeps its
   aspect ratio whatever the matrix), and resized to the network's input size.
3. **Background to zero**: every pixel outside the mask is set to 0, so noise, frames and corners are gone.
4. **Intensity standardised inside the head**: scaled so that the head's 99th percentile maps to a fixed
   level (MRI intensities are relative; zero stays zero).

Geometry is preserved otherwise: no flips, and the head's left stays left.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

PREPROCESS_NAME = "head-v1"
"""Recorded in every model card trained on this pre-processing (``preprocess.name``)."""
PREPROCESS_REVISION = "16f40065"
"""The key of every cache of pre-processed images and embeddings (:func:`preprocess_hash`). Bump it with any edit
that changes :func:`head_crop`'s outputs (the golden digest in ``tests/core/test_head_fast.py`` fails until both are
updated); an edit that computes the same outputs faster keeps it, and so keeps the caches. Its value is the prefix
of the sha256 of this module's source when caches were keyed by that hash."""

MASK_SIDE = 256  # the mask is computed on a copy whose longer side is at most this many pixels
SMOOTH_SIGMA = 2.0  # Gaussian smoothing (pixels of the mask copy) before thresholding
THRESHOLD = 0.12  # head: above the background's level + this fraction of the way to the 99.5th percentile
MARGIN = 0.04  # crop margin, as a fraction of the head's longer side
TARGET_LEVEL = 230.0  # the head's 99th percentile after standardisation (of 255)
_DISK = np.hypot(*np.mgrid[-3:4, -3:4]) <= 3.0  # a disk of radius 3 pixels (of the mask copy)


@dataclass(frozen=True)
class HeadBox:
    """Where the head was found, in the input's pixel coordinates (for drawing and for tests)."""

    top: int
    left: int
    side: int  # the square crop's side (may extend past the image: padded with zeros)
    found: bool  # False when no head-like region was found (the whole image is used)


def preprocess_hash() -> str:
    """The key of caches of pre-processed images and embeddings: :data:`PREPROCESS_REVISION`, pinned.

    Not a hash of this file any more: a faster implementation of the same outputs keeps every cache. What guards
    against training on stale images is the golden test (``tests/core/test_head_fast.py``), a digest of
    :func:`head_crop`'s outputs on the fixture slices and synthetic images that fails, asking for a new
    revision, when an edit changes them."""
    return PREPROCESS_REVISION


def _gray(arr: np.ndarray) -> np.ndarray:
    """H x W, or H x W x C with its first three channels averaged -> H x W float32."""
    if arr.ndim == 3:
        if arr.dtype == np.uint8 and arr.shape[2] == 3:
            # the float32 sum of three bytes is exact, so the mean is one division, not a strided reduction
            total = arr[..., 0].astype(np.uint16)
            total += arr[..., 1]
            total += arr[..., 2]
            return total.astype(np.float32) / np.float32(3)
        return arr[..., :3].astype(np.float32).mean(axis=2)
    return arr.astype(np.float32)


def _gaussian_weights(sigma: float) -> np.ndarray:
    """The 1-D kernel that ``ndimage.gaussian_filter`` correlates with, read back as its response to an impulse
    (each weight passes through unchanged: 1 x w, and 0 + w)."""
    radius = int(4.0 * sigma + 0.5)  # gaussian_filter's default truncate=4.0
    impulse = np.zeros(2 * radius + 1)
    impulse[radius] = 1.0
    return ndimage.gaussian_filter1d(impulse, sigma, mode="constant")


_SMOOTH_WEIGHTS = _gaussian_weights(SMOOTH_SIGMA)


def _smooth(small: np.ndarray) -> np.ndarray:
    """``ndimage.gaussian_filter(small, SMOOTH_SIGMA, mode="nearest")`` of a float32 image, bit for bit: the
    same two 1-D correlations (axis 0, then axis 1 in place, float32 in between) with the kernel built once."""
    out = np.empty(small.shape, np.float32)
    ndimage.correlate1d(small, _SMOOTH_WEIGHTS, 0, out, "nearest")
    ndimage.correlate1d(out, _SMOOTH_WEIGHTS, 1, out, "nearest")
    return out


# The disk (``hypot <= 3`` on a 7 x 7 grid: rows of 1, 5, 5, 7, 5, 5, 1 pixels) is the union of three centred
# rectangles, 7 x 1, 5 x 5 and 1 x 7. Erosion by a union is the AND of the erosions by its parts, dilation the
# OR of the dilations, and a rectangle's is a pass along the rows then one along the columns: here shifted slices
# of a copy padded with False (outside the image counts as False, as with ``border_value=0``). A run of 7 is two
# runs of 5 two pixels apart, so each direction's run of 5 serves both rectangles.


def _disk_pass(mask: np.ndarray, erode: bool) -> np.ndarray:
    """Erosion (``erode``) or dilation of a boolean image by :data:`_DISK`, outside the image False."""
    h, w = mask.shape
    op = np.logical_and if erode else np.logical_or
    pad = np.zeros((h + 6, w + 6), bool)
    pad[3:3 + h, 3:3 + w] = mask
    # runs of 5 along x centred on columns -1..w, every padded row; along y centred on rows -1..h, image columns
    run_x = op(pad[:, 0:w + 2], pad[:, 1:w + 3])
    run_y = op(pad[0:h + 2, 3:3 + w], pad[1:h + 3, 3:3 + w])
    for d in (2, 3, 4):
        op(run_x, pad[:, d:d + w + 2], out=run_x)
        op(run_y, pad[d:d + h + 2, 3:3 + w], out=run_y)
    out = op(run_x[3:3 + h, 0:w], run_x[3:3 + h, 2:w + 2])  # 1 x 7
    op(out, run_y[0:h], out=out)  # 7 x 1 ...
    op(out, run_y[2:h + 2], out=out)
    for d in range(1, 6):  # 5 x 5: runs of 5 along x, stacked over 5 rows
        op(out, run_x[d:d + h, 1:w + 1], out=out)
    return out


def _open_disk(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_opening(mask, structure=_DISK, border_value=0)``."""
    return _disk_pass(_disk_pass(mask, True), False)


def _close_disk(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_closing(mask, structure=_DISK, border_value=0)``."""
    return _disk_pass(_disk_pass(mask, False), True)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes(mask)``: the background's 4-connected regions that do not reach the image's
    edge are holes."""
    labels, n = ndimage.label(~mask)
    if n == 0:
        return mask
    outside = np.zeros(n + 1, bool)
    for edge in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        outside[edge] = True
    if outside[1:].all():
        return mask
    return mask | ~outside[labels]  # (label 0 is the mask's own pixels: True either way)


def head_mask(gray: np.ndarray) -> np.ndarray:
    """Boolean mask of the head in a 2-D intensity image (any size, any range)."""
    h, w = gray.shape
    scale = min(1.0, MASK_SIDE / max(h, w))
    small = gray
    if scale < 1.0:
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        small = np.asarray(Image.fromarray(gray.astype(np.float32), "F").resize((sw, sh), Image.BILINEAR))
    smooth = _smooth(np.asarray(small, np.float32))
    low, bright = (float(v) for v in np.percentile(smooth, [10, 99.5]))
    # the background's own level (noise in a magnitude image is positive): the threshold is a fraction of the
    # way from it to the head, so the head's edge stays where it is whatever the noise
    border = np.concatenate([smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1]])
    background = min(float(np.median(border)), low)
    if not np.isfinite(bright) or bright <= background:
        return np.zeros((h, w), bool)
    mask = smooth > background + THRESHOLD * (bright - background)
    # opening drops thin bright structures (a frame line, a ruler, text) that could touch the head
    mask = _open_disk(mask)
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros((h, w), bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = _fill_holes(_close_disk(labels == int(sizes.argmax())))
    if mask.shape != (h, w):
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255, "L").resize((w, h), Image.BILINEAR)) >= 128
    return mask


def head_box(mask: np.ndarray) -> HeadBox:
    """The square crop around ``mask``'s bounding box, with :data:`MARGIN` on every side."""
    h, w = mask.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        side = max(h, w)
        return HeadBox((h - side) // 2, (w - side) // 2, side, False)
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = max(bottom - top, right - left)
    side = int(round(side * (1 + 2 * MARGIN)))
    cy, cx = (top + bottom) / 2, (left + right) / 2
    return HeadBox(int(round(cy - side / 2)), int(round(cx - side / 2)), max(side, 1), True)


def _crop_square(arr: np.ndarray, box: HeadBox) -> np.ndarray:
    """``arr[top:top+side, left:left+side]`` with zeros where the square leaves the image."""
    h, w = arr.shape[:2]
    out = np.zeros((box.side, box.side, *arr.shape[2:]), arr.dtype)
    y0, x0 = max(box.top, 0), max(box.left, 0)
    y1, x1 = min(box.top + box.side, h), min(box.left + box.side, w)
    if y1 > y0 and x1 > x0:
        out[y0 - box.top:y1 - box.top, x0 - box.left:x1 - box.left] = arr[y0:y1, x0:x1]
    return out


def head_crop(image: np.ndarray, size: int = 224) -> np.ndarray:
    """An image (H x W or H x W x 3, uint8 or float, any size) -> ``size`` x ``size`` x 3 uint8: the head
    cropped square, background zero, intensity standardised inside the head. An image without a head-like
    region (blank) is only resized, square-padded."""
    return head_crop_with_box(image, size)[0]


def _find_head(gray: np.ndarray) -> tuple[np.ndarray, HeadBox, float]:
    """The head's mask, its square box, and the factor that takes the head's 99th percentile to
    :data:`TARGET_LEVEL` (1.0 where no head was found or it is black)."""
    mask = head_mask(gray)
    box = head_box(mask)
    factor = 1.0
    if box.found:
        level = float(np.percentile(gray[mask], 99))
        factor = TARGET_LEVEL / level if level > 0 else 1.0
    return mask, box, factor


def head_crop_with_box(image: np.ndarray, size: int = 224) -> tuple[np.ndarray, HeadBox]:
    """:func:`head_crop` and where the crop lies in ``image``."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3:
        arr = arr[..., :3]
    if arr.dtype == np.uint8 and (arr.ndim == 2 or arr.shape[2] == 3):
        return _head_crop_bytes(arr, size)
    arr = arr.astype(np.float32)
    mask, box, factor = _find_head(_gray(arr))
    if box.found:
        arr = arr * (mask[..., None] if arr.ndim == 3 else mask) * factor
    crop = _crop_square(np.clip(arr, 0, 255), box)
    rgb = crop if crop.ndim == 3 else np.repeat(crop[..., None], 3, axis=2)
    img = Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8), box


def _head_crop_bytes(arr: np.ndarray, size: int) -> tuple[np.ndarray, HeadBox]:
    """:func:`head_crop_with_box` of a uint8 H x W or H x W x 3 image (every upload, every training file), with
    the float path's outputs bit for bit: a grey image stored as RGB is handled as one channel (its mean is that
    channel) and replicated at the end, and the intensity scaling is a table of each byte's float32 result."""
    if arr.ndim == 3 and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all():
        arr = arr[..., 0]
    mask, box, factor = _find_head(_gray(arr))
    if box.found:
        # the float path's product (float32), clipping and rounding, once per byte value
        table = np.round(np.clip(np.arange(256, dtype=np.float32) * factor, 0, 255)).astype(np.uint8)
        arr = table.take(arr)
        np.multiply(arr, mask[..., None] if arr.ndim == 3 else mask, out=arr)
    img = Image.fromarray(_crop_square(arr, box))
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    out = np.asarray(img, dtype=np.uint8)
    if out.ndim == 2:
        out = np.stack([out, out, out], axis=2)
    return out, box
