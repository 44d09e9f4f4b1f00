"""The generated non-MRI images are the ones they always were: the OOD cards' figures (``weights/<task>/ood.json``),
their feature cache (keyed by the images' hash) and the robustness benchmark's non-MRI figure depend on it.
Pinned by digest, measured before the generators became one module (``diseaseid.ood.images``). ``binary_blobs``
was once drawn unseeded and differed every time."""
from __future__ import annotations

import functools
import hashlib

import numpy as np
import pytest

pytest.importorskip("skimage")

from diseaseid.ood.images import PICTURES, SETS, cat_on_black, non_mri, text_on_black  # noqa: E402

# sha256 over each image's name and pixels, in the set's order (commit 2f5cc65, before the move)
PINNED = {
    "calibration": (103, "2d2acb28fff17e1b19cfe780d62ac1b9fb4ffba12ef71adad2e406beccdb1f4a"),
    "heldout": (152, "d0e9fd9277b7b690aca942143fa1b5bc2b1f5ea3d167318dc0043258c660daab"),
    "cat_on_black": (1, "5a5714f823d96e5a3b6fbfe63aacc21181cf02bcc2159d876aa969c22c6357a2"),
    "text_on_black": (1, "addfc808bf82ad9f57b1cb38043daf3f876494f8727757e59010cab4e3927b09"),
}


def digest(images: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name, x in images.items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


@functools.cache
def generated(which: str) -> dict[str, np.ndarray]:
    if which in SETS:
        return non_mri(which)
    return {which: {"cat_on_black": cat_on_black, "text_on_black": text_on_black}[which]()}


@pytest.mark.parametrize("which", list(PINNED))
def test_each_set_is_the_pinned_one(which):
    images = generated(which)
    assert all(x.shape == (224, 224, 3) and x.dtype == np.uint8 for x in images.values())
    assert (len(images), digest(images)) == PINNED[which]


def test_the_sets_share_no_picture():
    assert not set(PICTURES["calibration"]) & set(PICTURES["heldout"])
    calibration, heldout = generated("calibration"), generated("heldout")
    assert not set(calibration) & set(heldout)
    assert "photo_gray:binary_blobs" in heldout


def test_an_unknown_set_is_refused():
    with pytest.raises(KeyError, match="calibration, heldout"):
        non_mri("validation")
