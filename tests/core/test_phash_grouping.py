"""Near-duplicate grouping by value: a constructed near-copy pair whose hashes differ in 2 or 4 bits reaches the
split's groups (and so one side of the split); a pair 6 bits apart does not. (Every hash has 32 bits set, its
64 coefficients thresholded at their median, so distances are even.)"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diseaseid.data.dataset import ImageFolder
from diseaseid.data.phash import near_duplicate_pairs, phash
from diseaseid.data.splits import PHASH_MAX_DISTANCE, grouped_stratified_split, leakage_groups
from diseaseid.tasks import get_task


def _bits(a: np.uint64, b: np.uint64) -> int:
    return int(np.bitwise_count(np.uint64(a) ^ np.uint64(b)))


def _base(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.random((8, 8)) * 255
    img = np.kron(small, np.ones((28, 28)))  # blocky: a few strong low frequencies
    return np.stack([img.astype(np.uint8)] * 3, -1)


def near_copy(base: np.ndarray, distance: int, seed: int = 0) -> np.ndarray:
    """A copy of ``base`` (noise added) whose pHash differs from the base's in exactly ``distance`` bits."""
    h = phash(base)
    rng = np.random.default_rng(seed)
    for amplitude in np.linspace(2, 120, 400):
        for _ in range(3):
            noise = rng.normal(0, amplitude, base.shape[:2])[..., None]
            cand = np.clip(base.astype(np.float64) + noise, 0, 255).astype(np.uint8)
            if _bits(h, phash(cand)) == distance:
                return cand
    raise AssertionError(f"no near copy at distance {distance}")


def _folder(images: list[np.ndarray], labels: list[int]) -> ImageFolder:
    n = len(images)
    return ImageFolder(Path("."), get_task("tumor"), [f"x/{i}.png" for i in range(n)], np.array(labels, np.int64),
                       [None] * n, np.full(n, -1, np.int64), _images=np.stack(images))


def test_split_distance_is_four():
    assert PHASH_MAX_DISTANCE == 4


@pytest.mark.parametrize("distance", [2, 4])
def test_near_copy_pair_ends_in_one_group(distance):
    a, c = _base(1), _base(2)
    b = near_copy(a, distance)
    assert _bits(phash(a), phash(b)) == distance and _bits(phash(a), phash(c)) > 8
    ds = _folder([a, c, b], [0, 1, 0])
    groups = leakage_groups(ds, verbose=False)
    assert groups[0] == groups[2] and groups[1] != groups[0]
    # ... and so the pair is never split between train and validation
    many = _folder([a, b] + [_base(s) for s in range(10, 30)], [0, 0] + [0, 1] * 10)
    g = leakage_groups(many, verbose=False)
    assert g[0] == g[1]
    for seed in range(5):
        train, val = grouped_stratified_split(many.labels, g, 0.3, seed=seed)
        assert (0 in val) == (1 in val) and (0 in train) == (1 in train)


def test_six_bits_apart_are_separate_groups():
    a = _base(1)
    b = near_copy(a, PHASH_MAX_DISTANCE + 2)
    groups = leakage_groups(_folder([a, b], [0, 0]), verbose=False)
    assert groups[0] != groups[1]
    hashes = np.array([phash(a), phash(b)], dtype=np.uint64)
    assert near_duplicate_pairs(hashes, PHASH_MAX_DISTANCE).shape == (0, 2)
    assert near_duplicate_pairs(hashes, PHASH_MAX_DISTANCE + 2).tolist() == [[0, 1]]


def test_grouping_follows_the_task_setting():
    """Dementia groups by subject only (slices of one brain are alike): the pair stays apart there."""
    a = _base(1)
    b = near_copy(a, 2)
    ds = _folder([a, b], [0, 0])
    ds.task = get_task("dementia")
    assert not ds.task.group_by_phash
    groups = leakage_groups(ds, verbose=False)
    assert groups[0] != groups[1]
