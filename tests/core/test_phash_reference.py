"""pHash against an independent reference on the committed fixture slices (mutants of the resize
size, the DCT normalisation and the low-frequency block survived tests whose images were built so that their
hashes do not move). The reference computes the orthonormal DCT-II as a matrix product, not with scipy."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diseaseid.data.phash import phash, phashes

FIXTURES = sorted((Path(__file__).resolve().parent.parent / "fixtures").glob("*/*/*.jpg"))


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II: row k is sqrt(2/n) cos(pi (2i + 1) k / 2n), row 0 scaled by 1/sqrt(2)."""
    i = np.arange(n)
    m = np.sqrt(2 / n) * np.cos(np.pi * (2 * i[None, :] + 1) * i[:, None] / (2 * n))
    m[0] /= np.sqrt(2)
    return m


def reference_phash(rgb: np.ndarray) -> int:
    gray = np.asarray(Image.fromarray(rgb).convert("L").resize((32, 32), Image.LANCZOS), dtype=np.float64)
    c = dct_matrix(32)
    low = (c @ gray @ c.T)[:8, :8].ravel()
    median = np.sort(low)[31:33].mean()  # 64 values: the mean of the two middle ones
    value = 0
    for bit in low > median:  # row-major, the first coefficient is the most significant bit
        value = (value << 1) | int(bit)
    return value


def test_the_reference_dct_is_orthonormal():
    c = dct_matrix(32)
    assert np.allclose(c @ c.T, np.eye(32), atol=1e-12)


@pytest.mark.skipif(not FIXTURES, reason="no fixture slices")
def test_phash_of_every_fixture_slice_equals_the_reference():
    images = [np.asarray(Image.open(p).convert("RGB")) for p in FIXTURES]
    expected = [reference_phash(im) for im in images]
    assert [int(phash(im)) for im in images] == expected
    assert [int(h) for h in phashes(images)] == expected
    assert len(set(expected)) > len(expected) // 2  # the slices differ, so the check is not vacuous


def test_the_hash_reads_low_frequencies_in_row_major_order():
    """A horizontal cosine of frequency 1 puts its energy in coefficient (0, 1): bit 62, beside the DC term's
    bit 63 (the other 62 coefficients are rounding noise around a median of about 0: not compared)."""
    x = np.arange(32)
    wave = 128 + 100 * np.cos(np.pi * (2 * x + 1) / 64)
    img = np.repeat(np.tile(wave, (32, 1))[:, :, None], 3, axis=2).astype(np.uint8)
    assert int(phash(img)) >> 62 == 0b11
