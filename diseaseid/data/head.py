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

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

PREPROCESS_NAME = "head-v1"
"""Recorded in every model card trained on this pre-processing (``preprocess.name``)."""

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


@functools.cache
def preprocess_hash() -> str:
    """A short hash of this module's source: caches of pre-processed images are keyed by it, so an edit to
    the pre-processing can never be trained on stale images."""
    import hashlib

    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:8]


def _gray(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3:
        return arr[..., :3].astype(np.float32).mean(axis=2)
    return arr.astype(np.float32)


def head_mask(gray: np.ndarray) -> np.ndarray:
    """Boolean mask of the head in a 2-D intensity image (any size, any range)."""
    h, w = gray.shape
    scale = min(1.0, MASK_SIDE / max(h, w))
    small = gray
    if scale < 1.0:
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        small = np.asarray(Image.fromarray(gray.astype(np.float32), "F").resize((sw, sh), Image.BILINEAR))
    smooth = ndimage.gaussian_filter(small.astype(np.float32), SMOOTH_SIGMA, mode="nearest")
    bright = float(np.percentile(smooth, 99.5))
    # the background's own level (noise in a magnitude image is positive): the threshold is a fraction of the
    # way from it to the head, so the head's edge stays where it is whatever the noise
    border = np.concatenate([smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1]])
    background = min(float(np.median(border)), float(np.percentile(smooth, 10)))
    if not np.isfinite(bright) or bright <= background:
        return np.zeros((h, w), bool)
    mask = smooth > background + THRESHOLD * (bright - background)
    # opening drops thin bright structures (a frame line, a ruler, text) that could touch the head
    mask = ndimage.binary_opening(mask, structure=_DISK, border_value=0)
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros((h, w), bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = ndimage.binary_closing(labels == int(sizes.argmax()), structure=_DISK, border_value=0)
    mask = ndimage.binary_fill_holes(mask)
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


def head_crop_with_box(image: np.ndarray, size: int = 224) -> tuple[np.ndarray, HeadBox]:
    """:func:`head_crop` and where the crop lies in ``image``."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3:
        arr = arr[..., :3]
    arr = arr.astype(np.float32)
    gray = _gray(arr)
    mask = head_mask(gray)
    box = head_box(mask)
    if box.found:
        level = float(np.percentile(gray[mask], 99))
        factor = TARGET_LEVEL / level if level > 0 else 1.0
        arr = arr * (mask[..., None] if arr.ndim == 3 else mask) * factor
    crop = _crop_square(np.clip(arr, 0, 255), box)
    rgb = crop if crop.ndim == 3 else np.repeat(crop[..., None], 3, axis=2)
    img = Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8), box
