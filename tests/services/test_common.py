"""services.common in-process: format sniffing, the DICOM grey-level pipeline, limits, auth, form values."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from diseaseid.data.preprocess import decode_image, to_uint8_rgb
from services.common.auth import configure_auth, key_is_valid
from services.common.errors import ImageTooLarge, InvalidImage, UnknownModel, UnknownTask, UnsupportedMediaType
from services.common.images import decode_image_bytes, sniff_format
from services.common.settings import ServiceSettings
from services.common.validation import resolve_model, resolve_task
from tests.helpers import PATIENT_ID, PATIENT_NAME, bomb_png, make_dicom, png_bytes
from tests.services.conftest import fixture_bytes

SETTINGS = ServiceSettings(api_keys="")


@pytest.fixture(scope="module")
def slice_gray() -> np.ndarray:
    """A real tumor slice as an 8-bit grayscale array."""
    return np.asarray(Image.open(io.BytesIO(fixture_bytes("tumor", "glioma"))).convert("L"))


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(int) - b.astype(int)).max())


def relative(gray: np.ndarray) -> np.ndarray:
    """What a slice looks like after decoding when only relative intensities count (DICOM, 16-bit)."""
    return to_uint8_rgb(gray.astype(np.float64))


def test_sniff_format_reads_magic_bytes_not_declared_types():
    jpeg = fixture_bytes("tumor", "glioma")
    assert sniff_format(jpeg, "application/octet-stream") == "jpeg"
    assert sniff_format(png_bytes(np.zeros((4, 4), np.uint8)), "image/jpeg") == "png"
    assert sniff_format(b"\0" * 128 + b"DICM" + b"\0" * 8) == "dicom"
    assert sniff_format(b"\x08\x00\x05\x00", "application/dicom") == "dicom-raw"
    assert sniff_format(b"\x08\x00\x05\x00", None, "slice.DCM") == "dicom-raw"
    assert sniff_format(b"GIF89a....", "image/png") is None


def test_jpeg_and_png_decode_to_the_training_pipeline_output(slice_gray):
    jpeg = fixture_bytes("tumor", "glioma")
    out = decode_image_bytes(jpeg, SETTINGS)
    assert out.array.shape == (224, 224, 3) and out.array.dtype == np.uint8
    assert np.array_equal(out.array, decode_image(jpeg))
    assert (out.format, out.width, out.height, out.size_bytes) == ("jpeg", *slice_gray.shape[::-1], len(jpeg))
    sixteen = png_bytes(slice_gray.astype(np.uint16) * 257)
    assert decode_image_bytes(sixteen, SETTINGS).format == "png"


def test_dicom_rescale_slope_intercept_matches_the_jpeg(slice_gray):
    stored = (slice_gray.astype(np.float64) * 4 + 1000) / 2  # value = 2 * stored - 1000 = 4 * gray
    data = make_dicom(stored.astype(np.uint16), slope=2.0, intercept=-1000.0)
    out = decode_image_bytes(data, SETTINGS)
    assert out.format == "dicom" and (out.width, out.height) == slice_gray.shape[::-1]
    assert max_diff(out.array, relative(slice_gray)) <= 1


def test_dicom_negative_rescale_slope_inverts_the_stored_values(slice_gray):
    """With a negative slope the stored values run backwards; ignoring Rescale Slope/Intercept shows
    the slice inverted (a positive slope alone is undone by the min-max scaling that follows)."""
    stored = (4080 - slice_gray.astype(np.float64) * 16).astype(np.uint16)  # value = -stored / 16 + 255 = gray
    out = decode_image_bytes(make_dicom(stored, slope=-1 / 16, intercept=255.0), SETTINGS)
    assert max_diff(out.array, relative(slice_gray)) <= 1
    assert max_diff(out.array, relative(255 - slice_gray)) >= 200  # what ignoring them would show


def test_dicom_window_applies_to_rescaled_values(slice_gray):
    """The window is given in rescaled units (PS3.3 C.11.2: the VOI transform follows the modality one)."""
    stored = (slice_gray.astype(np.float64) * 16 + 1000).astype(np.uint16)  # value = stored / 4 - 250 = 4 gray
    center, width = 400.0, 401.0  # keeps values 200..600 (gray 50..150), saturates the rest
    out = decode_image_bytes(make_dicom(stored, slope=0.25, intercept=-250.0, window=(center, width)), SETTINGS)
    value = slice_gray.astype(np.float64) * 4
    windowed = np.clip((value - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    assert max_diff(out.array, relative(windowed)) <= 2
    assert max_diff(out.array, relative(slice_gray)) > 20  # the window changed the picture


def test_dicom_monochrome1_is_inverted(slice_gray):
    stored = (255 - slice_gray).astype(np.uint16) * 16
    out = decode_image_bytes(make_dicom(stored, photometric="MONOCHROME1"), SETTINGS)
    assert max_diff(out.array, relative(slice_gray)) <= 1


def test_dicom_window_is_applied(slice_gray):
    stored = slice_gray.astype(np.uint16) * 16  # 0..4080
    center, width = 1600.0, 1601.0  # keeps 800..2400 and saturates the rest
    out = decode_image_bytes(make_dicom(stored, window=(center, width)), SETTINGS)
    windowed = np.clip((stored - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    assert max_diff(out.array, relative(windowed)) <= 2
    assert max_diff(out.array, relative(slice_gray)) > 20  # windowing changed the picture


def test_dicom_voi_lut_is_applied(slice_gray):
    lut = [int(v) for v in (np.arange(256) < 128) * 1000]  # a threshold at 128
    out = decode_image_bytes(make_dicom(slice_gray.astype(np.uint16), voi_lut=lut), SETTINGS)
    assert max_diff(out.array, relative((slice_gray < 128).astype(np.float64))) <= 1


def test_dicom_without_preamble_needs_a_declared_type(slice_gray):
    raw = make_dicom(slice_gray.astype(np.uint16), preamble=False)
    with pytest.raises(UnsupportedMediaType):
        decode_image_bytes(raw, SETTINGS)
    assert decode_image_bytes(raw, SETTINGS, content_type="application/dicom").format == "dicom"


def test_dicom_rejections_are_clear_and_never_echo_patient_tags(slice_gray):
    frames = np.stack([slice_gray, slice_gray]).astype(np.uint16)
    cases = {
        "multi-frame": make_dicom(frames),
        "no image": make_dicom(None, with_pixels=False, sop_class="1.2.840.10008.5.1.4.1.1.88.11"),
        "corrupt": make_dicom(slice_gray.astype(np.uint16))[:600],
    }
    for expected, data in cases.items():
        with pytest.raises(InvalidImage) as info:
            decode_image_bytes(data, SETTINGS)
        message = info.value.message
        assert expected in message or (expected == "corrupt" and "DICOM" in message), message
        assert PATIENT_NAME.split("^")[0] not in message and PATIENT_ID not in message
    assert "Basic Text SR" in decode_error(cases["no image"])


def decode_error(data: bytes) -> str:
    try:
        decode_image_bytes(data, SETTINGS)
    except InvalidImage as exc:
        return exc.message
    raise AssertionError("expected InvalidImage")


def test_pixel_cap_refuses_bombs_before_decoding():
    small = ServiceSettings(api_keys="", max_pixels=10_000)
    with pytest.raises(ImageTooLarge):
        decode_image_bytes(bomb_png(101), small)
    assert decode_image_bytes(bomb_png(100), small).array.shape == (224, 224, 3)


def test_degenerate_and_empty_images_are_refused():
    for data in (b"", png_bytes(np.zeros((1, 1), np.uint8)), fixture_bytes("tumor", "glioma")[:300]):
        with pytest.raises(InvalidImage):
            decode_image_bytes(data, SETTINGS)


def test_api_keys_parse_and_compare():
    settings = ServiceSettings(api_keys=" k1 , k2,,")
    assert [k.get_secret_value() for k in settings.api_keys] == ["k1", "k2"]
    assert "k1" not in repr(settings)

    class App:  # configure_auth only needs a .state namespace
        class state:  # noqa: N801
            pass

    configure_auth(App, settings.api_keys)
    digests = App.state.api_key_digests
    assert key_is_valid("k2", digests) and not key_is_valid("k3", digests) and not key_is_valid(None, digests)
    assert key_is_valid(None, ())  # development mode


def test_no_strict_prefix_or_extension_of_a_key_is_valid():
    """A key check that accepted a strict prefix of a valid key would go unnoticed by the other tests."""
    key = "clinic-key-0123456789abcdef"

    class App:
        class state:  # noqa: N801
            pass

    configure_auth(App, ServiceSettings(api_keys=f"{key},other-key").api_keys)
    digests = App.state.api_key_digests
    assert key_is_valid(key, digests) and key_is_valid("other-key", digests)
    for n in range(1, len(key)):
        assert not key_is_valid(key[:n], digests), key[:n]
    for wrong in (key + "0", " " + key, key.upper(), key[1:], "other-key"[:-1]):
        assert not key_is_valid(wrong, digests), wrong


def test_task_and_model_values():
    assert resolve_task(" tumor").name == "tumor"
    assert resolve_model(None) == "student" and resolve_model("", "teacher") == "teacher"
    with pytest.raises(UnknownTask, match="dementia, tumor"):
        resolve_task("glioma")
    with pytest.raises(UnknownModel):
        resolve_model("vgg16")
    with pytest.raises(UnknownTask) as info:
        resolve_task("x" * 500)
    assert "x" * 50 not in info.value.message


def test_compressed_dicom_decodes_like_the_uncompressed_one(slice_gray):
    import pydicom
    from pydicom.uid import RLELossless

    plain = make_dicom(slice_gray.astype(np.uint16))
    ds = pydicom.dcmread(io.BytesIO(plain))
    ds.compress(RLELossless)
    buf = io.BytesIO()
    ds.save_as(buf)
    assert len(buf.getvalue()) < len(plain)
    assert np.array_equal(decode_image_bytes(buf.getvalue(), SETTINGS).array,
                          decode_image_bytes(plain, SETTINGS).array)
