"""DICOM in, every way a PACS sends it: each transfer syntax decodes to the pixels of the uncompressed file.

References are pydicom's own test files (shipped inside the wheel): MR_small.dcm (16-bit MR, explicit VR
little endian) for its implicit, big-endian, RLE, JPEG-LS and JPEG 2000 copies, and SC_rgb_rle.dcm (lossless
RGB) for the JPEG baseline, JPEG lossless, JPEG-LS near-lossless and JPEG 2000 copies of the same picture.
Deflate, lossy JPEG-LS, lossy JPEG 2000 and 8-bit JPEG baseline copies of MR_small are made here with the
encoders the plugins bring (pyjpegls, openjpeg, Pillow). Lossless copies must match exactly, at both the
stored values (pydicom with the plugins) and the model input (services.common.images); lossy copies within
the bound each codec promises or the one stated per case.
"""
from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSNearLossless,
)

from services.common.errors import InvalidImage
from services.common.images import decode_image_bytes
from services.common.settings import ServiceSettings

SETTINGS = ServiceSettings(api_keys="")

MR_LOSSLESS = {  # file -> the transfer syntax it holds (checked, so a renamed file cannot hide a syntax)
    "MR_small_implicit.dcm": "1.2.840.10008.1.2",
    "MR_small_bigendian.dcm": "1.2.840.10008.1.2.2",
    "MR_small_expb.dcm": "1.2.840.10008.1.2.2",
    "MR_small_RLE.dcm": "1.2.840.10008.1.2.5",
    "MR_small_jpeg_ls_lossless.dcm": "1.2.840.10008.1.2.4.80",
    "MR_small_jp2klossless.dcm": "1.2.840.10008.1.2.4.90",
}
# (file, transfer syntax, largest allowed |difference| from SC_rgb_rle.dcm per 8-bit sample)
RGB_CASES = [
    ("SC_rgb_jpeg_gdcm.dcm", "1.2.840.10008.1.2.4.70", 0),  # JPEG lossless, process 14 SV1
    ("SC_rgb_gdcm_KY.dcm", "1.2.840.10008.1.2.4.91", 0),  # JPEG 2000 (written losslessly)
    ("SC_rgb_jls_lossy_line.dcm", "1.2.840.10008.1.2.4.81", 2),  # JPEG-LS NEAR=2: the codec's own bound
    ("SC_rgb_jls_lossy_sample.dcm", "1.2.840.10008.1.2.4.81", 2),
    ("SC_rgb_dcmtk_+eb+cr.dcm", "1.2.840.10008.1.2.4.50", 8),  # JPEG baseline, RGB; quality-dependent bound
    ("SC_rgb_jpeg_dcmtk.dcm", "1.2.840.10008.1.2.4.50", 8),  # JPEG baseline, YBR_FULL
]


def _file(name: str) -> bytes:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom's test file {name} is not in this pydicom wheel")
    with open(path, "rb") as f:
        return f.read()


def _stored(data: bytes) -> np.ndarray:
    return pydicom.dcmread(io.BytesIO(data)).pixel_array.astype(np.int64)


def _bytes(ds: pydicom.Dataset, **kwargs) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True, **kwargs)
    return buf.getvalue()


def _syntax(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).file_meta.TransferSyntaxUID)


@pytest.fixture(scope="module")
def mr_small() -> bytes:
    return _file("MR_small.dcm")


@pytest.mark.parametrize("name", sorted(MR_LOSSLESS))
def test_lossless_mr_copies_decode_to_the_uncompressed_pixels(name, mr_small):
    data = _file(name)
    assert _syntax(data) == MR_LOSSLESS[name]
    assert np.array_equal(_stored(data), _stored(mr_small))
    assert np.array_equal(decode_image_bytes(data, SETTINGS).array, decode_image_bytes(mr_small, SETTINGS).array)


def test_deflated_copy_decodes_to_the_uncompressed_pixels(mr_small):
    ds = pydicom.dcmread(io.BytesIO(mr_small))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    data = _bytes(ds)
    assert _syntax(data) == DeflatedExplicitVRLittleEndian
    assert np.array_equal(decode_image_bytes(data, SETTINGS).array, decode_image_bytes(mr_small, SETTINGS).array)


@pytest.mark.parametrize("near", [1, 3])
def test_jpeg_ls_near_lossless_stays_within_its_near_bound(near, mr_small):
    ds = pydicom.dcmread(io.BytesIO(mr_small))
    ds.compress(JPEGLSNearLossless, jls_error=near)
    data = _bytes(ds)
    diff = np.abs(_stored(data) - _stored(mr_small))
    assert _syntax(data) == JPEGLSNearLossless
    assert diff.max() <= near  # the standard's guarantee for NEAR
    assert diff.max() == near  # and it is lossy at all (a lossless copy would hide a wrong syntax)


def test_jpeg_2000_lossy_stays_within_a_stated_bound(mr_small):
    ds = pydicom.dcmread(io.BytesIO(mr_small))
    ds.compress(JPEG2000, j2k_cr=[4])  # 4:1 on a 64 x 64 slice of 16-bit noise-rich values
    data = _bytes(ds)
    reference = _stored(mr_small)
    diff = np.abs(_stored(data) - reference)
    span = reference.max() - reference.min()
    assert _syntax(data) == JPEG2000
    assert 0 < diff.max() <= 0.02 * span  # at most 2% of the image's range anywhere (measured 1.1%)
    assert diff.mean() <= 0.005 * span  # and 0.5% on average (measured 0.23%)
    model_in = np.abs(decode_image_bytes(data, SETTINGS).array.astype(int)
                      - decode_image_bytes(mr_small, SETTINGS).array.astype(int))
    assert model_in.mean() <= 2.0  # grey levels of 255, averaged over the model's input


def test_jpeg_baseline_8bit_mr_stays_within_a_stated_bound(mr_small):
    """An 8-bit MR exported as JPEG baseline (how some PACS send 'lossy' views): within 6 grey levels on
    average of the 8-bit uncompressed export, the loss of quality 90."""
    ds = pydicom.dcmread(io.BytesIO(mr_small))
    pixels = ds.pixel_array.astype(np.float64)
    eight = np.round(255 * (pixels - pixels.min()) / (pixels.max() - pixels.min())).astype(np.uint8)
    plain = pydicom.dcmread(io.BytesIO(mr_small))
    plain.set_pixel_data(eight, "MONOCHROME2", 8)
    jpeg = io.BytesIO()
    Image.fromarray(eight, "L").save(jpeg, "JPEG", quality=90)
    lossy = pydicom.dcmread(io.BytesIO(_bytes(plain)))
    lossy.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    lossy.PixelData = encapsulate([jpeg.getvalue()])
    lossy["PixelData"].VR = "OB"
    lossy.LossyImageCompression = "01"
    data = _bytes(lossy)
    diff = np.abs(_stored(data) - eight.astype(np.int64))
    assert _syntax(data) == JPEGBaseline8Bit
    assert 0 < diff.max() <= 40 and diff.mean() <= 6


@pytest.mark.parametrize("name,syntax,bound", RGB_CASES)
def test_rgb_copies_decode_within_their_bound(name, syntax, bound):
    reference = _file("SC_rgb_rle.dcm")
    data = _file(name)
    assert _syntax(data) == syntax
    diff = np.abs(_stored(data) - _stored(reference))
    assert diff.max() <= bound
    if bound == 0:
        assert np.array_equal(decode_image_bytes(data, SETTINGS).array,
                              decode_image_bytes(reference, SETTINGS).array)


def test_twelve_bit_jpeg_extended_is_refused_with_the_syntax_named():
    """12-bit JPEG extended needs libjpeg (pylibjpeg-libjpeg, GPL-licensed: left out, see pyproject.toml)."""
    data = _file("JPGExtended.dcm")
    with pytest.raises(InvalidImage) as info:
        decode_image_bytes(data, SETTINGS)
    assert "JPEG Extended" in info.value.message


def test_every_lossless_mr_copy_gets_the_same_answer_over_http(inference_client, mr_small):
    """The inference service itself: each syntax sent as a file, the same probabilities as the plain file."""
    def probabilities(data: bytes) -> dict:
        r = inference_client.post("/predict", data={"task": "tumor"},
                                  files={"file": ("slice.dcm", data, "application/dicom")})
        assert r.status_code == 200, r.text
        return r.json()["probabilities"]

    expected = probabilities(mr_small)
    for name in sorted(MR_LOSSLESS):
        assert probabilities(_file(name)) == expected, name
