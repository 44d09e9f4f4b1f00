"""One study is one patient's series (a subject answer made of several patients' slices would be wrong):
``POST /predict/study`` refuses slices that cannot be one
subject's series with 422 ``mixed_*`` naming the mismatch, and warns (``warnings``) when JPEG/PNG slices do not
look like one stack. The checks themselves (diseaseid.serving.study_checks) first, then over real HTTP with
DICOM files built by pydicom and the committed fixture slices."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from diseaseid.data.preprocess import to_uint8_rgb
from diseaseid.serving.study_checks import (
    MIN_NEIGHBOUR_SIMILARITY,
    MixedStudy,
    SliceSource,
    check_study,
    grey_features,
    slice_similarity,
)
from tests.helpers import PATIENT_ID, make_dicom
from tests.services.conftest import FIXTURES

DEMENTIA = FIXTURES / "dementia"
README_STUDY = sorted((DEMENTIA / "MildDemented").glob("MildDemented-002_*.jpg"))  # r08, r16, r24
TUMOR = sorted((FIXTURES / "tumor").rglob("*.jpg"))


def grey(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("L"))


def model_input(path) -> np.ndarray:
    with Image.open(path) as img:
        return to_uint8_rgb(img)


def jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95)
    return buf.getvalue()


SERIES = {"PatientID": PATIENT_ID, "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.1",
          "SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.1.1",
          "ImageOrientationPatient": [1, 0, 0, 0, 1, 0], "PixelSpacing": [0.9375, 0.9375]}


def dicom_slice(path, **tags) -> bytes:
    """One fixture slice as an MR DICOM of the series ``SERIES``, with ``tags`` changed."""
    return make_dicom(grey(path).astype(np.uint16) * 16, bits_stored=12, **{**SERIES, **tags})


# ---- the checks, in process --------------------------------------------------------------------------------


def sources(n: int, fmt: str = "jpeg", size=(176, 208), **dicom) -> list[SliceSource]:
    header = {"PatientID": "p", "StudyInstanceUID": "1.2", "SeriesInstanceUID": "1.2.3",
              "ImageOrientationPatient": (1.0, 0, 0, 0, 1.0, 0), "PixelSpacing": (1.0, 1.0)}
    return [SliceSource(fmt, *size, dict(header) if fmt == "dicom" else None) for _ in range(n)]


def test_similarity_is_pearson_correlation_of_the_grey_levels():
    a = model_input(README_STUDY[0])
    assert slice_similarity(a, a) == pytest.approx(1.0)
    assert slice_similarity(a, 255 - a) == pytest.approx(-1.0)
    assert slice_similarity(a, a // 2 + 17) == pytest.approx(1.0, abs=1e-3)  # contrast and brightness aside
    assert slice_similarity(a, np.full_like(a, 90)) == 0.0  # flat: no correlation, no division by zero
    rng = np.random.default_rng(0)
    assert abs(slice_similarity(a, rng.integers(0, 256, a.shape, dtype=np.uint8))) < 0.1
    f = grey_features([a, a])
    assert f.shape == (2, 56 * 56) and np.linalg.norm(f, axis=1) == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize(("attribute", "value", "code"), [
    ("PatientID", "someone-else", "mixed_patients"),
    ("PatientID", None, "mixed_patients"),  # absent in one slice only
    ("StudyInstanceUID", "1.9", "mixed_studies"),
    ("SeriesInstanceUID", "1.2.4", "mixed_series"),
    ("ImageOrientationPatient", (1.0, 0, 0, 0, 0, -1.0), "mixed_orientation"),  # axial beside coronal
    ("ImageOrientationPatient", (1.0, 0.002, 0, 0, 1.0, 0), "mixed_orientation"),  # 0.1 degrees: beyond 1e-3
    ("PixelSpacing", (1.0, 1.01), "mixed_pixel_spacing"),
])
def test_dicom_slices_of_another_series_are_refused_naming_the_attribute(attribute, value, code):
    study = sources(4, "dicom")
    study[2].dicom[attribute] = value
    images = [model_input(p) for p in README_STUDY] + [model_input(README_STUDY[-1])]
    with pytest.raises(MixedStudy) as refused:
        check_study(study, images)
    assert refused.value.code == code
    assert f"slices 0 and 2 have different {attribute}" in refused.value.message
    assert "someone-else" not in refused.value.message  # the values never come back


def test_dicom_within_the_tolerances_is_one_series():
    study = sources(3, "dicom")
    study[1].dicom["ImageOrientationPatient"] = (1.0, 0.0004, 0, 0, 1.0, 0)  # DS rounding, not another plane
    study[2].dicom["PixelSpacing"] = (1.0004, 1.0)
    for s in study:  # both absent everywhere is no mismatch (an anonymised series)
        s.dicom["PatientID"] = None
    assert check_study(study, [model_input(p) for p in README_STUDY]) == []


def test_dicom_mixed_with_jpeg_and_dicom_of_two_sizes_are_refused():
    images = [model_input(p) for p in README_STUDY[:2]]
    with pytest.raises(MixedStudy, match="slices 0 and 1 are not both DICOM") as refused:
        check_study([sources(1, "dicom")[0], sources(1, "jpeg")[0]], images)
    assert refused.value.code == "mixed_formats"
    study = sources(2, "dicom")
    study[1] = SliceSource("dicom", 256, 256, study[0].dicom)
    with pytest.raises(MixedStudy, match="different Rows x Columns") as refused:
        check_study(study, images)
    assert refused.value.code == "mixed_sizes"


def test_jpeg_slices_of_two_shapes_are_refused_of_one_shape_and_two_sizes_warned():
    images = [model_input(p) for p in README_STUDY]
    study = sources(3)
    study[1] = SliceSource("jpeg", 224, 224)
    with pytest.raises(MixedStudy, match=r"slices 0 and 1 have different shapes \(176x208, 224x224\)"):
        check_study(study, images)
    study[1] = SliceSource("png", 352, 416)  # the same shape, twice the size
    (warning,) = check_study(study, images)
    assert warning.code == "mixed_sizes" and warning.slices == (0, 1)
    study[1] = SliceSource("png", 179, 208)  # 1.7 % wider: within ASPECT_TOLERANCE, still a size warning
    assert [w.code for w in check_study(study, images)] == ["mixed_sizes"]


def test_one_subjects_slices_pass_and_a_tumour_slice_among_them_is_unlike_its_neighbours():
    images = [model_input(p) for p in README_STUDY]
    assert check_study(sources(3), images) == []  # the README's study: every 8th slice of one subject
    assert check_study(sources(1), images[:1]) == []
    tumour = model_input(TUMOR[0])
    assert slice_similarity(images[0], tumour) < MIN_NEIGHBOUR_SIMILARITY
    warnings = check_study(sources(4), [images[0], images[1], tumour, images[2]])
    unlike = [w for w in warnings if w.code == "unlike_neighbours"]
    assert [w.slices for w in unlike] == [(1, 2), (2, 3)]
    assert "slices 1 and 2 are less alike (correlation 0." in unlike[0].message


def test_a_sudden_change_and_interleaved_slices_are_warned():
    # A smooth stack stands in for one subject's adjacent slices: each differs a little from the next.
    rng = np.random.default_rng(1)
    base = rng.normal(size=(56, 56))
    drift = rng.normal(size=(56, 56))
    stack = [np.kron(base + 0.05 * k * drift, np.ones((4, 4))) for k in range(6)]
    other = [np.kron(rng.normal(size=(56, 56)) * 0.3 + base, np.ones((4, 4))) for _ in range(6)]
    f = grey_features(stack)
    assert check_study(sources(6), stack, features=f) == []
    switched = grey_features(stack[:3] + other[3:4])  # a slice of someone else at the end
    codes = {(w.code, w.slices) for w in check_study(sources(4), [None] * 4, features=switched)}
    assert ("sudden_change", (2, 3)) in codes
    interleaved = grey_features([stack[0], other[1], stack[2], other[3], stack[4]])
    codes = {(w.code, w.slices) for w in check_study(sources(5), [None] * 5, features=interleaved)}
    assert ("out_of_order", (0, 1, 2)) in codes


# ---- over HTTP ---------------------------------------------------------------------------------------------


def post_study(client, parts: list[tuple[str, bytes, str]], task: str = "dementia"):
    return client.post("/predict/study", data={"task": task, "aggregate": "mean"},
                       files=[("files", part) for part in parts])


def dicoms(**changed_in_last) -> list[tuple[str, bytes, str]]:
    files = [dicom_slice(p) for p in README_STUDY]
    files.append(dicom_slice(README_STUDY[-1], **changed_in_last))
    return [(f"s{i}.dcm", data, "application/dicom") for i, data in enumerate(files)]


@pytest.mark.parametrize(("changed", "code", "attribute"), [
    ({"PatientID": "PID-0099-OTHER"}, "mixed_patients", "PatientID"),
    ({"StudyInstanceUID": "1.2.826.0.1.3680043.8.498.2"}, "mixed_studies", "StudyInstanceUID"),
    ({"SeriesInstanceUID": "1.2.826.0.1.3680043.8.498.1.2"}, "mixed_series", "SeriesInstanceUID"),
    ({"ImageOrientationPatient": [1, 0, 0, 0, 0, -1]}, "mixed_orientation", "ImageOrientationPatient"),
    ({"PixelSpacing": [0.5, 0.5]}, "mixed_pixel_spacing", "PixelSpacing"),
])
def test_http_a_dicom_study_of_two_series_is_refused_with_422_naming_the_mismatch(inference_client, changed,
                                                                                  code, attribute):
    r = post_study(inference_client, dicoms(**changed))
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert error["message"].startswith(f"slices 0 and 3 have different {attribute}")
    assert PATIENT_ID not in r.text and "PID-0099" not in r.text


def test_http_one_dicom_series_is_answered_without_warnings(inference_client):
    r = post_study(inference_client, dicoms())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["warnings"] == [] and body["n_slices"] == 4 and len(body["slices"]) == 4


def test_http_jpeg_study_the_readme_example_has_no_warnings(inference_client):
    r = post_study(inference_client, [(p.name, p.read_bytes(), "image/jpeg") for p in README_STUDY])
    assert r.status_code == 200, r.text
    assert r.json()["warnings"] == []


def test_http_tumour_and_dementia_slices_with_task_tumor_are_refused(inference_client):
    parts = [(p.name, p.read_bytes(), "image/jpeg") for p in (TUMOR[0], README_STUDY[0], TUMOR[1])]
    r = post_study(inference_client, parts, task="tumor")
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "mixed_sizes"
    assert r.json()["error"]["message"].startswith("slices 0 and 1 have different shapes (224x224, 176x208)")


def test_http_a_slice_unlike_its_neighbours_is_answered_with_a_warning(inference_client):
    # A tumour slice brought to the dementia slices' size, between two of them: same shape, unlike content.
    tumour = np.asarray(Image.open(TUMOR[0]).convert("L").resize((176, 208)))
    parts = [(README_STUDY[0].name, README_STUDY[0].read_bytes(), "image/jpeg"), ("t.jpg", jpeg(tumour), "image/jpeg"),
             (README_STUDY[1].name, README_STUDY[1].read_bytes(), "image/jpeg")]
    r = post_study(inference_client, parts)
    assert r.status_code == 200, r.text
    warnings = r.json()["warnings"]
    assert [(w["code"], w["slices"]) for w in warnings] == [
        ("unlike_neighbours", [0, 1]), ("unlike_neighbours", [1, 2]),
        ("out_of_order", [0, 1, 2])]  # slices 0 and 2 are more alike than either is to slice 1
    # Twice the size at the same shape: answered, with a size warning.
    big = jpeg(np.asarray(Image.open(README_STUDY[1]).convert("L").resize((352, 416))))
    parts = [(README_STUDY[0].name, README_STUDY[0].read_bytes(), "image/jpeg"), ("big.jpg", big, "image/jpeg")]
    r = post_study(inference_client, parts)
    assert r.status_code == 200, r.text
    assert [(w["code"], w["slices"]) for w in r.json()["warnings"]] == [("mixed_sizes", [0, 1])]


def test_grey_features_block_sums_equal_numpys_multi_axis_sum():
    from diseaseid.serving.study_checks import _block_sums

    rng = np.random.default_rng(5)
    cases = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8), np.full((224, 224, 3), 255, np.uint8),
             rng.integers(0, 256, (12, 20, 1), dtype=np.uint8), rng.integers(0, 256, (64, 64, 3), dtype=np.uint16),
             rng.random((16, 24, 3)).astype(np.float32)]
    for image in cases:
        h, w, c = image.shape
        want = image.reshape(h // 4, 4, w // 4, 4, c).sum(
            axis=(1, 3, 4), dtype=np.int64 if image.dtype.kind in "ub" else np.float64)
        got = _block_sums(image, 4)
        assert got.shape == want.shape and np.array_equal(got, want), image.dtype
    assert _block_sums(cases[1], 4).max() == 4 * 4 * 3 * 255  # the largest byte cell still fits 16 bits
    # a byte cell that would not fit 16 bits takes the integer sum
    big = np.full((32, 32, 3), 255, np.uint8)
    assert _block_sums(big, 16).max() == 16 * 16 * 3 * 255
