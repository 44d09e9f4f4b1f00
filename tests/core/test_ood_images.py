"""The generated non-MRI sets are the same on every call: the OOD cards' figures and their feature cache
(keyed by the images' hash) depend on it. ``binary_blobs`` was drawn unseeded and differed every time."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skimage")

from diseaseid.serving.ood_images import PICTURES, SETS, non_mri  # noqa: E402


@pytest.mark.parametrize("which", SETS)
def test_each_set_is_the_same_on_every_call(which):
    first, second = non_mri(which), non_mri(which)
    assert list(first) == list(second)
    changed = [name for name in first if not np.array_equal(first[name], second[name])]
    assert changed == []
    assert all(x.shape == (224, 224, 3) and x.dtype == np.uint8 for x in first.values())


def test_the_sets_share_no_picture():
    assert not set(PICTURES["calibration"]) & set(PICTURES["heldout"])
    calibration, heldout = non_mri("calibration"), non_mri("heldout")
    assert not set(calibration) & set(heldout)
    assert "photo_gray:binary_blobs" in heldout
