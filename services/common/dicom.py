"""DICOM slices to pixel arrays, the way a viewer would show them.

Order of operations follows DICOM PS3.3 C.11 (the grayscale pipeline): stored values -> Modality LUT or
Rescale Slope/Intercept -> VOI LUT or Window Center/Width -> MONOCHROME1 inverted so that bright means
high signal, as in every training image. Colour (RGB, YBR, palette) is converted to RGB.

Only single-frame image objects are accepted: a multi-frame object (a whole series in one file) or an
object without pixels (a structured report, a presentation state) is refused with a message that says so.
Messages and logs carry structural facts only (sizes, frame counts, SOP class and transfer syntax names),
never a tag value that could identify a patient.
"""
from __future__ import annotations

import io
import logging

import numpy as np
import pydicom
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.uid import UID

from services.common.errors import ImageTooLarge, InvalidImage

# pydicom's validation warnings quote tag values (names, IDs): silence them process-wide rather than
# per call, because warnings.catch_warnings is not thread-safe and decoding runs in a thread pool.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
logging.getLogger("pydicom").setLevel(logging.ERROR)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def _sop_class_name(ds: pydicom.Dataset) -> str:
    uid = ds.get("SOPClassUID") or getattr(ds.get("file_meta", None), "MediaStorageSOPClassUID", None)
    try:
        return UID(str(uid)).name if uid else "unknown SOP class"
    except Exception:
        return "unknown SOP class"


def _transfer_syntax_name(ds: pydicom.Dataset) -> str:
    try:
        return UID(str(ds.file_meta.TransferSyntaxUID)).name
    except Exception:
        return "unknown transfer syntax"


# What must agree across the slices of one study (diseaseid.serving.study.check_study). Kept with the decoded
# slice in memory for that check only: never logged, never in a response.
SERIES_KEYWORDS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID")
GEOMETRY_KEYWORDS = ("ImageOrientationPatient", "PixelSpacing")


def series_facts(ds: pydicom.Dataset) -> dict:
    """The identity and geometry of the series a slice belongs to; None for an attribute absent or empty
    (an unreadable number counts as absent)."""
    facts: dict = {}
    for keyword in SERIES_KEYWORDS:
        value = ds.get(keyword)
        facts[keyword] = str(value).strip() or None if value is not None else None
    for keyword in GEOMETRY_KEYWORDS:
        try:
            value = ds.get(keyword)
            facts[keyword] = tuple(float(v) for v in value) if value else None
        except (TypeError, ValueError):
            facts[keyword] = None
    return facts


def read_dicom(data: bytes, *, max_pixels: int, min_side: int = 1,
               force: bool = False) -> tuple[np.ndarray, int, int, dict]:
    """DICOM bytes -> (display-ready array HxW float or HxWx3, width, height, :func:`series_facts`).

    ``force`` reads files without the 128-byte preamble and ``DICM`` marker (declared as DICOM by the
    client). Raises :class:`InvalidImage` or :class:`ImageTooLarge`.
    """
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=force)
    except Exception:
        raise InvalidImage("cannot read the DICOM file: it is corrupt or truncated") from None
    try:
        return (*_pixels(ds, max_pixels=max_pixels, min_side=min_side), series_facts(ds))
    except (InvalidImage, ImageTooLarge):
        raise
    except Exception:  # a corrupt element surfaces lazily, wherever it is first read
        raise InvalidImage("the DICOM file has corrupt or inconsistent image attributes") from None


def _pixels(ds: pydicom.Dataset, *, max_pixels: int, min_side: int) -> tuple[np.ndarray, int, int]:
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise InvalidImage(f"the DICOM object has no image ({_sop_class_name(ds)}); send an image slice")
    if "Rows" not in ds or "Columns" not in ds:
        raise InvalidImage("the DICOM image has no Rows/Columns")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    rows, cols = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames > 1:
        raise InvalidImage(f"multi-frame DICOM ({frames} frames) is not supported; send one slice per file")
    if rows * cols > max_pixels:
        raise ImageTooLarge(f"DICOM image is {cols}x{rows} pixels, over the limit of {max_pixels:,} pixels")
    if min(rows, cols) < min_side:
        raise InvalidImage(f"DICOM image is {cols}x{rows} pixels; at least {min_side}x{min_side} is needed")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    try:
        arr = ds.pixel_array
    except Exception:
        raise InvalidImage(
            f"cannot decode the DICOM pixel data ({_transfer_syntax_name(ds)})") from None
    try:
        if photometric in ("MONOCHROME1", "MONOCHROME2") and samples == 1:
            arr = apply_voi_lut(apply_modality_lut(arr, ds), ds).astype(np.float64)
            if photometric == "MONOCHROME1":  # low values are bright: flip to the MONOCHROME2 convention
                finite = arr[np.isfinite(arr)]
                if finite.size:
                    arr = finite.max() + finite.min() - arr
        elif photometric == "PALETTE COLOR":
            arr = apply_color_lut(arr, ds)
    except Exception:
        raise InvalidImage("cannot apply the DICOM grey-level transforms (modality/VOI LUT)") from None
    if arr.shape[:2] != (rows, cols) or arr.ndim not in (2, 3):
        raise InvalidImage(f"unexpected DICOM pixel array shape {arr.shape}")
    return arr, cols, rows
