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

import math
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


def grey(arr: np.ndarray) -> np.ndarray:
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


def gaussian_weights(sigma: float) -> np.ndarray:
    """The 1-D kernel that ``ndimage.gaussian_filter`` correlates with, read back as its response to an impulse
    (each weight passes through unchanged: 1 x w, and 0 + w)."""
    radius = int(4.0 * sigma + 0.5)  # gaussian_filter's default truncate=4.0
    impulse = np.zeros(2 * radius + 1)
    impulse[radius] = 1.0
    return ndimage.gaussian_filter1d(impulse, sigma, mode="constant")


_SMOOTH_WEIGHTS = gaussian_weights(SMOOTH_SIGMA)


def _smooth(small: np.ndarray) -> np.ndarray:
    """``ndimage.gaussian_filter(small, SMOOTH_SIGMA, mode="nearest")`` of a float32 image, bit for bit: the
    same two 1-D correlations (axis 0, then axis 1 in place, float32 in between) with the kernel built once."""
    out = np.empty(small.shape, np.float32)
    ndimage.correlate1d(small, _SMOOTH_WEIGHTS, 0, out, "nearest")
    ndimage.correlate1d(out, _SMOOTH_WEIGHTS, 1, out, "nearest")
    return out


# The disk (``hypot <= 3`` on a 7 x 7 grid: rows of 1, 5, 5, 7, 5, 5, 1 pixels) is the union of three centred
# rectangles, 7 x 1, 5 x 5 and 1 x 7. Erosion by a union is the AND of the erosions by its parts, dilation the
# OR of the dilations, and a rectangle's is a pass along the rows then one along the columns. A run of 7 is two
# runs of 5 two pixels apart, so each direction's run of 5 serves both rectangles:
#   out[y, x] = X5[y, x-1] | X5[y, x+1] | Y5[y-1, x] | Y5[y+1, x] | X5[y-2..y+2, x]
# with X5 (Y5) the run of 5 along x (y). The image lies in a frame of 3 False pixels (outside the image counts as
# False, as with ``border_value=0``), and every shift is an offset into the flattened framed array: a shift by
# dy rows is dy * width. No pixel of the image reads past the frame, so no read wraps into another row, and
# each pass is a few whole-array operations (contiguous, vectorised) instead of one per row.

_FRAME = 3  # the disk's radius


def _framed(mask: np.ndarray) -> np.ndarray:
    """``mask`` inside a frame of :data:`_FRAME` False pixels."""
    h, w = mask.shape
    out = np.zeros((h + 2 * _FRAME, w + 2 * _FRAME), bool)
    out[_FRAME:_FRAME + h, _FRAME:_FRAME + w] = mask
    return out


def _disk_framed(framed: np.ndarray, erode: bool) -> np.ndarray:
    """Erosion (``erode``) or dilation by :data:`_DISK` of the image inside ``framed`` (a :func:`_framed` array),
    outside the image False; the result is framed the same way."""
    rows, s = framed.shape
    n = rows * s
    x = framed.ravel()
    op = np.logical_and if erode else np.logical_or
    # X5 at flat positions [s - 1, n - s + 1), Y5 at [2s, n - 2s): what the frame's inside rows read
    x0, x1 = s - 1, n - s + 1
    run_x = op(x[x0 - 2:x1 - 2], x[x0 - 1:x1 - 1])
    for d in (0, 1, 2):
        op(run_x, x[x0 + d:x1 + d], out=run_x)
    y0 = 2 * s
    run_y = op(x[0:n - 4 * s], x[s:n - 3 * s])
    for d in (2, 3, 4):
        op(run_y, x[d * s:n - (4 - d) * s], out=run_y)
    # the result at the inside rows [3s, n - 3s), frame columns included (cleared below)
    p0, p1 = _FRAME * s, n - _FRAME * s

    def xs(offset: int) -> np.ndarray:
        return run_x[p0 + offset - x0:p1 + offset - x0]

    def ys(offset: int) -> np.ndarray:
        return run_y[p0 + offset - y0:p1 + offset - y0]

    result = np.zeros((rows, s), bool)
    out = result.ravel()[p0:p1]
    op(xs(-1), xs(1), out=out)  # 1 x 7
    op(out, ys(-s), out=out)  # 7 x 1
    op(out, ys(s), out=out)
    for dy in (-2, -1, 0, 1, 2):  # 5 x 5
        op(out, xs(dy * s), out=out)
    result[:, :_FRAME] = False  # frame columns: their reads wrapped into the neighbouring rows
    result[:, s - _FRAME:] = False
    return result


def _inside(framed: np.ndarray) -> np.ndarray:
    return framed[_FRAME:-_FRAME, _FRAME:-_FRAME]


def _disk_pass(mask: np.ndarray, erode: bool) -> np.ndarray:
    """Erosion (``erode``) or dilation of a boolean image by :data:`_DISK`, outside the image False."""
    return _inside(_disk_framed(_framed(mask), erode))


def _open_framed(framed: np.ndarray) -> np.ndarray:
    return _disk_framed(_disk_framed(framed, True), False)


def _close_framed(framed: np.ndarray) -> np.ndarray:
    return _disk_framed(_disk_framed(framed, False), True)


def _open_disk(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_opening(mask, structure=_DISK, border_value=0)``."""
    return _inside(_open_framed(_framed(mask)))


def _close_disk(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_closing(mask, structure=_DISK, border_value=0)``."""
    return _inside(_close_framed(_framed(mask)))


def _bbox(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The smallest window (rows, columns) that holds every True pixel of ``mask``; None when there is none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``ndimage.label(mask)`` (4-connected): the same labels, in uint16 where they fit (less memory to write, a
    faster label). They fit below 2 x 65535 pixels: one pixel of each region gives pixels no two of which are
    4-neighbours, and a grid holds at most half its pixels (rounded up) so (a checkerboard); scipy raises rather
    than wrap if they did not."""
    return ndimage.label(mask, output=np.uint16 if mask.size < 2 * 65535 else np.int32)


def _fill_holes_framed(framed: np.ndarray) -> np.ndarray:
    """The holes filled in a window of a larger mask that is False everywhere outside the window, the window
    given inside a frame of False pixels (any width): the background regions not joined to the frame are the
    larger mask's holes. Returns the framed array, filled.

    A background region that touches the window's edge touches either the image's edge or background outside
    the window, and every background pixel outside the window reaches the image's edge in a straight line away
    from it (outside a rectangle that holds the mask, the mask is False). So the regions joined to the frame are
    exactly those that reach the image's edge, as ``ndimage.binary_fill_holes`` finds them on the whole image."""
    labels, n = _label(~framed)
    if n == 1:  # only the frame's region: no holes
        return framed
    return labels != labels[0, 0]  # (label 0 is the mask's own pixels: True either way)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes(mask)``: the background's 4-connected regions that do not reach the image's
    edge are holes, found inside the mask's bounding box only (:func:`_fill_holes_framed`)."""
    window = _bbox(mask)
    if window is None:
        return mask
    out = mask.copy()
    out[window] = _inside(_fill_holes_framed(_framed(mask[window])))
    return out


def _head_region(mask: np.ndarray) -> np.ndarray:
    """The head in a thresholded mask: the largest 4-connected region of its opening by :data:`_DISK`, closed,
    holes filled (``ndimage.binary_opening``, ``label``, ``binary_closing`` and ``binary_fill_holes``, outside the
    image False).

    All of it in one window that holds the mask, grown by the disk's radius (the closing reaches that far past
    its input) and framed: outside the window the mask is False, as beyond the image's edge, so every step gives
    what it gives on the whole image (the holes: :func:`_fill_holes_framed`; the regions are numbered in the same
    raster order, so a tie for the largest picks the same one)."""
    h, w = mask.shape
    window = _bbox(mask)
    if window is None:
        return np.zeros((h, w), bool)
    rows, cols = window
    rows = slice(max(rows.start - _FRAME, 0), min(rows.stop + _FRAME, h))
    cols = slice(max(cols.start - _FRAME, 0), min(cols.stop + _FRAME, w))
    # opening drops thin bright structures (a frame line, a ruler, text) that could touch the head
    opened = _open_framed(_framed(mask[rows, cols]))
    labels, n = _label(opened)
    if n == 0:
        return np.zeros((h, w), bool)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        opened = labels == int(sizes.argmax())
    out = np.zeros((h, w), bool)
    out[rows, cols] = _inside(_fill_holes_framed(_close_framed(opened)))
    return out


# np.percentile (method "linear") selects the order statistics next to each quantile's position by partitioning a
# copy of the whole array; head_mask needs four of ~50,000 values and _find_head two. _order_statistics finds them
# among few candidates (a threshold from a sample, checked by counting: exact whatever the sample), and
# _percentile interpolates between them with numpy's own arithmetic and dtypes.

_SAMPLE_SIZE = 1500  # values in the sample that places the candidates' threshold


def _select(values: np.ndarray, ranks: list[int]) -> np.ndarray:
    """``np.partition(values, ranks)[ranks]``, always with two ranks or more: numpy's path for a single rank
    can be ~30x slower on an array with many equal values (a black background), its path for several is not."""
    kth = ranks
    if len(ranks) == 1 and values.size > 1:
        kth = [ranks[0], ranks[0] + 1 if ranks[0] + 1 < values.size else ranks[0] - 1]
    return np.partition(values, kth)[ranks]


def _order_statistics(values: np.ndarray, ranks: list[int]) -> np.ndarray:
    """``np.sort(values)[ranks]`` of a 1-D array without NaN, for a few distinct ranks in ascending order.

    Ranks in the lower half are read among the values ``<= t`` and ranks in the upper half among those ``>= t``,
    each ``t`` an order statistic of a strided sample with a margin. That is exact once the count of candidates
    covers the rank (in the sorted array the values ``<= t``, ties included, are the first ones and those ``>= t``
    the last ones), which is checked; when it is not (an unlucky sample), the whole array is partitioned."""
    n = values.size
    step = n // _SAMPLE_SIZE
    if step < 4:
        return _select(values, ranks)
    low = [r for r in ranks if 2 * r < n]
    high = [r for r in ranks if 2 * r >= n]
    sample = values[::step]
    m = sample.size
    # the sample ranks past the expected places of the highest low rank and of the lowest high rank, by ~4
    # standard deviations of a sample's count (placeholders where a side has no rank; with the ends, never one
    # rank: see _select)
    p = ((low[-1] if low else 0) + 1) / n * m
    pick_low = min(m - 1, int(p + 4.0 * p ** 0.5) + 4)
    p = (n - (high[0] if high else n - 1)) / n * m
    pick_high = max(0, m - 1 - int(p + 4.0 * p ** 0.5) - 4)
    sample = np.partition(sample, sorted({0, pick_low, pick_high, m - 1}))
    out = []
    if low:
        below = values[values <= sample[pick_low]]
        if below.size <= low[-1]:
            return _select(values, ranks)
        smallest = below.min()
        if smallest == below.max():  # all equal (an exactly black background)
            out.extend([smallest] * len(low))
        else:
            out.extend(_select(below, low))
    if high:
        above = values[values >= sample[pick_high]]
        first = n - above.size  # the rank of above's smallest value in the whole array
        if first > high[0]:
            return _select(values, ranks)
        out.extend(_select(above, [r - first for r in high]))
    return np.array(out, values.dtype)


def _median(values: np.ndarray) -> float:
    """``float(np.median(values))`` of a float32 array: numpy's own mean of the one or two middle values, selected
    as in :func:`_order_statistics` (an array that is not float32 or not finite goes to numpy)."""
    values = values.ravel()
    n = values.size
    if values.dtype != np.float32 or n == 0 or not np.isfinite(values.sum()):
        return float(np.median(values))
    middle = [n // 2 - 1, n // 2] if n % 2 == 0 else [n // 2]
    return float(np.mean(_select(values, middle)))


def _percentile(values: np.ndarray, q: float | list[float]) -> float | list[float]:
    """``np.percentile(values, q)`` (method "linear") bit for bit, for a float32 array: for a Python scalar
    ``q`` numpy interpolates in float32 (a float32 result, given here as a float), for a list in float64.

    numpy's ``_quantile`` step by step, in scalars: the virtual index ``(n - 1) * q`` (float64), its floor and the
    next rank (the last value when the index reaches the end, where numpy's gamma is taken from index -1), and
    ``_lerp``: ``a + (b - a) * gamma``, or ``b - (b - a) * (1 - gamma)`` when gamma >= 0.5, with ``b - a`` in
    float32. The order statistics come from :func:`_order_statistics`; an array that is not float32, is empty,
    or holds a NaN or an infinity goes to numpy itself."""
    flat = values.ravel()
    if flat.dtype != np.float32 or flat.size == 0 or not np.isfinite(flat.sum()):
        result = np.percentile(values, q)
        return float(result) if np.ndim(result) == 0 else [float(v) for v in result]
    n = flat.size
    weak = type(q) in (int, float)
    places = []  # (previous rank, next rank, gamma) per quantile
    for quantile in ([q] if weak else q):
        virtual = (n - 1) * (quantile / 100)
        if virtual >= n - 1:
            places.append((n - 1, n - 1, virtual + 1))
        else:
            previous = math.floor(virtual)
            places.append((previous, previous + 1, virtual - previous))
    ranks = sorted({r for place in places for r in place[:2]})
    stats = dict(zip(ranks, _order_statistics(flat, ranks), strict=True))  # np.float32 values
    out = []
    for previous, following, gamma in places:
        a, b = stats[previous], stats[following]
        diff = b - a  # float32
        if weak:  # a Python float meets float32 scalars: cast to float32 first (NEP 50), float32 arithmetic
            value = b - diff * np.float32(1 - gamma) if gamma >= 0.5 else a + diff * np.float32(gamma)
        else:  # float64 gamma: float64 arithmetic
            value = float(b) - float(diff) * (1 - gamma) if gamma >= 0.5 else float(a) + float(diff) * gamma
        out.append(float(value))
    return out[0] if weak else out


def head_mask(gray: np.ndarray) -> np.ndarray:
    """Boolean mask of the head in a 2-D intensity image (any size, any range)."""
    h, w = gray.shape
    scale = min(1.0, MASK_SIDE / max(h, w))
    small = gray
    if scale < 1.0:
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        small = np.asarray(Image.fromarray(gray.astype(np.float32), "F").resize((sw, sh), Image.BILINEAR))
    smooth = _smooth(np.asarray(small, np.float32))
    low, bright = _percentile(smooth, [10, 99.5])
    # the background's own level (noise in a magnitude image is positive): the threshold is a fraction of the
    # way from it to the head, so the head's edge stays where it is whatever the noise
    border = np.concatenate([smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1]])
    background = min(_median(border), low)
    if not np.isfinite(bright) or bright <= background:
        return np.zeros((h, w), bool)
    mask = smooth > background + THRESHOLD * (bright - background)
    mask = _head_region(mask)
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
        level = _percentile(gray[mask], 99)
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
    mask, box, factor = _find_head(grey(arr))
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
    mask, box, factor = _find_head(grey(arr))
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
