"""The fast parts of diseaseid.data.head against numpy's and scipy's own functions, bit for bit.

Each shortcut (order statistics from a sample's candidates, numpy's interpolation redone in scalars, the median,
uint16 labels, the framed flat-array morphology, the windowed head region, holes filled in a framed window) is
checked on random arrays and on the cases where a shortcut could slip: ties, an exactly black background, one
pixel, empty and full masks, holes and regions touching the image's edge, equal-size regions (the largest is
picked by number), samples chosen to mislead. The whole crop against the original: test_head_fast.py.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from diseaseid.data import head
from tests.core.test_head_fast import _ellipse, _reference_mask

# --- order statistics, percentiles, median --------------------------------------------------------------------------


def _arrays():
    """float32 arrays: sizes below and above the sampled path's threshold, ties, black backgrounds, far-apart
    values (b - a rounds in float32), negatives, signed zeros, sorted and reversed, and samples that mislead."""
    rng = np.random.default_rng(11)
    for n in (1, 2, 3, 7, 100, 5999, 6000, 6001, 20_000, 50_176):
        yield rng.random(n, np.float32) * 255
        yield rng.integers(0, 4, n).astype(np.float32)  # few distinct values: ties at every rank
        black = rng.random(n, np.float32) * 200
        black[rng.random(n) < 0.6] = 0  # an exactly black background past the 10th percentile
        yield black
    n = 50_176
    yield np.zeros(n, np.float32)
    yield np.full(n, 3.25, np.float32)
    yield np.sort(rng.random(n, np.float32))
    yield np.sort(rng.random(n, np.float32))[::-1].copy()
    wide = rng.random(n, np.float32) * np.float32(1e-3)
    wide[rng.random(n) < 0.3] = np.float32(3e7)  # b - a not exact in float32
    yield wide
    yield (rng.standard_normal(n) * 1e3).astype(np.float32)  # negatives
    zeros = np.where(rng.random(n) < 0.5, np.float32(-0.0), np.float32(0.0)).astype(np.float32)
    zeros[:100] = 1
    yield zeros
    step = n // head._SAMPLE_SIZE
    for inside, outside in ((0.0, (1.0, 2.0)), (10.0, (0.0, 1.0)), (0.5, (0.0, 1.0))):
        fooled = rng.uniform(*outside, n).astype(np.float32)
        fooled[::step] = inside  # the strided sample sees one value only
        yield fooled
    yield from _guard_edges(rng)
    image = rng.random((224, 224), np.float32)  # a 2-D array, as head_mask passes it
    yield ndimage.gaussian_filter(image, 2.0)


N_SLICE = 224 * 224
LOW, HIGH = [5017, 5018], [49924, 49925]  # the ranks of np.percentile(smooth, [10, 99.5]) on a 224 x 224 slice


def _guard_edges(rng):
    """Arrays whose candidates fall one short of the ranks, just cover them, and one more: the sample's threshold
    is a value that many sampled positions hold (the sample's lowest or highest ~600), and the count of that value
    in the whole array is set around the rank that the candidates must reach."""
    n, step = N_SLICE, N_SLICE // head._SAMPLE_SIZE
    sampled = np.arange(0, n, step)
    others = np.setdiff1d(np.arange(n), sampled)
    for count in range(LOW[-1] - 1, LOW[-1] + 3):  # values <= 0: count; the rank LOW[-1] needs count > LOW[-1]
        values = rng.uniform(1, 2, n).astype(np.float32)
        values[sampled[:600]] = 0
        values[others[:count - 600]] = 0
        yield values
    for count in range(n - HIGH[0] - 1, n - HIGH[0] + 3):  # values >= 9: count; HIGH[0] needs count >= n - HIGH[0]
        values = rng.uniform(1, 2, n).astype(np.float32)
        values[sampled[-100:]] = 9
        values[others[:count - 100]] = 9
        yield values


def test_order_statistics_equal_a_sort():
    for values in _arrays():
        n = values.size
        ordered = np.sort(values.ravel())
        for ranks in ([0], [n - 1], [0, n - 1], sorted({n // 10, min(n - 1, n // 10 + 1)}),
                      sorted({n // 10, n // 2, (n * 199) // 200, n - 1}), *([LOW + HIGH] if n == N_SLICE else [])):
            got = head._order_statistics(values.ravel(), ranks)
            assert got.dtype == values.dtype
            assert np.array_equal(got, ordered[ranks]), (n, ranks)


def test_select_equals_partition():
    rng = np.random.default_rng(2)
    for values in (rng.integers(0, 3, 5000).astype(np.float32), rng.random(2, np.float32), np.ones(1, np.float32)):
        n = values.size
        for ranks in ([0], [n - 1], [n // 2], sorted({0, n - 1})):
            assert np.array_equal(head._select(values, ranks), np.sort(values)[ranks])


def _bits(x) -> np.ndarray:
    return np.asarray(x, np.float64).view(np.uint64)


@pytest.mark.parametrize("q", [[10, 99.5], 99, 50, 0, 100, 99.5, [0, 100], [37.3, 50.0, 62.125], 12.5])
def test_percentile_equals_numpy_bit_for_bit(q):
    for values in _arrays():
        for shaped in (values, values.reshape(1, -1)):
            got = head._percentile(shaped, q)
            want = np.percentile(shaped, q)
            if isinstance(q, list):
                assert isinstance(got, list) and len(got) == len(q)
            else:
                assert isinstance(got, float)
            assert np.array_equal(_bits(got), _bits(want)), (values.size, q, got, want)


def test_percentile_falls_back_to_numpy_where_it_must():
    rng = np.random.default_rng(4)
    base = rng.random(20_000, np.float32)
    for bad in (np.nan, np.inf, -np.inf):
        values = base.copy()
        values[123] = bad
        for q in ([10, 99.5], 99):
            with np.errstate(invalid="ignore"):
                got, want = head._percentile(values, q), np.percentile(values, q)
            assert np.array_equal(np.asarray(got, np.float64), np.asarray(want, np.float64), equal_nan=True)
    for values in (base.astype(np.float64), (base * 255).astype(np.uint8)):  # not float32: numpy itself
        assert head._percentile(values, 99) == float(np.percentile(values, 99))
        assert head._percentile(values, [10, 99.5]) == [float(v) for v in np.percentile(values, [10, 99.5])]


def test_median_equals_numpy():
    for values in _arrays():
        assert np.array_equal(_bits(head._median(values)), _bits(float(np.median(values)))), values.size
    assert head._median(np.array([1, 2], np.uint8)) == 1.5
    with np.errstate(invalid="ignore"):
        assert np.isnan(head._median(np.array([1, np.nan, 2], np.float32)))


# --- labels, morphology, the head region ------------------------------------------------------------------------------


def _masks():
    rng = np.random.default_rng(8)
    for shape in [(1, 1), (1, 9), (9, 1), (2, 2), (7, 7), (13, 31), (64, 48), (120, 97), (224, 224)]:
        for density in (0.05, 0.5, 0.75, 0.9, 0.97):
            yield rng.random(shape) < density
        yield np.ones(shape, bool)
        yield np.zeros(shape, bool)
        one = np.zeros(shape, bool)
        one[shape[0] // 2, shape[1] // 2] = True
        yield one
    for h, w in [(96, 80), (160, 200)]:  # a head-like region with holes, moved to each edge and corner
        for cy, cx in [(h // 2, w // 2), (10, w // 2), (h - 10, w // 2), (h // 2, 8), (h // 2, w - 8), (6, 6),
                       (h - 6, w - 6)]:
            blob = _ellipse(h, w, cy, cx, 30, 25) & ~_ellipse(h, w, cy, cx, 8, 6)
            blob[cy - 2:cy + 2, :] &= rng.random((4, w)) < 0.7  # a ragged cut with small holes
            yield blob
            yield blob | (rng.random((h, w)) < 0.02)  # specks around it
    ties = np.zeros((60, 90), bool)  # equal-size squares: the largest is picked by its number
    for y in range(4, 56, 13):
        for x in range(4, 86, 13):
            ties[y:y + 9, x:x + 9] = True
    yield ties
    yield ties[:, ::-1].copy()
    yield ~ties
    frame = np.zeros((50, 50), bool)  # a ring whose hole touches nothing, and a bay open at the image's edge
    frame[5:45, 5:45] = True
    frame[15:35, 15:35] = False
    frame[20:30, 40:50] = False
    yield frame


def test_label_equals_scipy():
    for m in _masks():
        labels, n = head._label(m)
        ref, ref_n = ndimage.label(m)
        assert n == ref_n and np.array_equal(labels, ref), m.shape
    checker = (np.indices((256, 256)).sum(axis=0) % 2).astype(bool)  # the most regions a 256 x 256 mask has
    labels, n = head._label(checker)
    assert labels.dtype == np.uint16 and n == 256 * 256 // 2 and np.array_equal(labels, ndimage.label(checker)[0])


def test_disk_passes_and_holes_equal_scipy():
    for m in _masks():
        for erode, fn in ((True, ndimage.binary_erosion), (False, ndimage.binary_dilation)):
            assert np.array_equal(head._disk_pass(m, erode), fn(m, structure=head._DISK, border_value=0)), m.shape
        assert np.array_equal(head._open_disk(m), ndimage.binary_opening(m, structure=head._DISK, border_value=0))
        assert np.array_equal(head._close_disk(m), ndimage.binary_closing(m, structure=head._DISK, border_value=0))
        assert np.array_equal(head._fill_holes(m), ndimage.binary_fill_holes(m)), m.shape


def _reference_region(mask: np.ndarray) -> np.ndarray:
    """The steps of head_mask after the threshold, as the original wrote them (scipy on the whole image)."""
    mask = ndimage.binary_opening(mask, structure=head._DISK, border_value=0)
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros(mask.shape, bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = ndimage.binary_closing(labels == int(sizes.argmax()), structure=head._DISK, border_value=0)
    return ndimage.binary_fill_holes(mask)


def test_head_region_equals_the_whole_image_steps():
    for m in _masks():
        got = head._head_region(m)
        assert got.shape == m.shape and got.dtype == bool
        assert np.array_equal(got, _reference_region(m)), m.shape


def test_head_mask_equals_the_reference_on_random_heads():
    rng = np.random.default_rng(21)
    for shape in [(64, 64), (176, 208), (224, 224), (300, 257)]:
        h, w = shape
        for _ in range(3):
            img = np.zeros(shape, np.float32)
            for _ in range(rng.integers(1, 4)):  # heads, some cut by the edge, some small
                cy, cx = rng.integers(0, h), rng.integers(0, w)
                img[_ellipse(h, w, cy, cx, int(rng.integers(3, h // 2)), int(rng.integers(3, w // 2)))] = \
                    rng.uniform(60, 220)
            img[_ellipse(h, w, h // 2, w // 2, h // 10, w // 12)] = 5  # a dark hole
            img += rng.uniform(0, rng.choice([1, 30, 90]), shape).astype(np.float32)
            assert np.array_equal(head.head_mask(img), _reference_mask(img)), shape
    for img in (np.zeros((40, 40), np.float32), np.full((40, 40), 7, np.float32), np.ones((1, 1), np.float32)):
        assert np.array_equal(head.head_mask(img), _reference_mask(img))
