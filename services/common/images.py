"""Uploaded bytes -> a model-ready 224x224x3 uint8 image, with the facts a response reports about the input.

:func:`decode_image_bytes` is synchronous and CPU-bound (run it off the event loop). It sniffs the format
from the bytes themselves (clients often send ``application/octet-stream``), refuses what is not JPEG, PNG or
DICOM (415), reads the header first so that a decompression bomb is refused before any pixel is decoded,
and refuses empty, undecodable or degenerate images (422).
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from diseaseid.data.preprocess import open_image, to_uint8_rgb
from services.common.dicom import read_dicom
from services.common.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType
from services.common.settings import ServiceSettings

FORMATS = ("jpeg", "png", "dicom")
_DICOM_TYPES = ("application/dicom", "application/dicom+octet-stream")
_DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
# Recognised only to name them in the 415 message.
_OTHER_MAGIC = ((b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
                (b"%PDF", "PDF"), (b"PK\x03\x04", "ZIP"), (b"\x1f\x8b", "gzip"))


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """An accepted upload: the model input plus what the response says about the file."""

    array: np.ndarray  # 224 x 224 x 3 uint8 RGB
    sha256: str
    format: str  # "jpeg" | "png" | "dicom"
    width: int  # of the original image
    height: int
    size_bytes: int

    def info(self) -> dict:
        return {"sha256": self.sha256, "format": self.format, "size_bytes": self.size_bytes,
                "width": self.width, "height": self.height}


def sniff_format(data: bytes, content_type: str | None = None, filename: str | None = None) -> str | None:
    """``jpeg``, ``png`` or ``dicom`` from the magic bytes; DICOM without a preamble only when declared."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[128:132] == b"DICM":
        return "dicom"
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared in _DICOM_TYPES or (filename or "").lower().endswith(_DICOM_SUFFIXES):
        return "dicom-raw"  # no preamble: let pydicom try
    return None


def _unsupported(data: bytes) -> UnsupportedMediaType:
    found = next((name for magic, name in _OTHER_MAGIC if data.startswith(magic)), None)
    what = f" (it looks like {found})" if found else ""
    return UnsupportedMediaType(f"the file is not a JPEG, PNG or DICOM image{what}")


def _decode_raster(data: bytes, fmt: str, settings: ServiceSettings) -> tuple[np.ndarray, int, int]:
    # Header only: PIL reads the size without touching pixel data. (No warnings.catch_warnings here: it is not
    # thread-safe, and a bomb warning promoted to an error elsewhere is caught below all the same.)
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(f"the {fmt.upper()} image is a decompression bomb; not decoded") from None
    except Exception:
        raise InvalidImage(f"cannot decode the {fmt.upper()} image: it is corrupt or truncated") from None
    if width * height > settings.max_pixels:
        limit = settings.max_pixels
        raise ImageTooLarge(f"image is {width}x{height} pixels, over the limit of {limit:,}; not decoded")
    _check_side(width, height, settings)
    try:
        img = open_image(data, settings.max_pixels)
        return to_uint8_rgb(img), width, height
    except Exception:  # ImageDecodeError, and whatever a corrupt EXIF block or odd mode raises
        raise InvalidImage(f"cannot decode the {fmt.upper()} image: it is corrupt or truncated") from None


def _check_side(width: int, height: int, settings: ServiceSettings) -> None:
    if min(width, height) < settings.min_image_side:
        side = settings.min_image_side
        raise InvalidImage(f"image is {width}x{height} pixels; at least {side}x{side} is needed")


def decode_image_bytes(data: bytes, settings: ServiceSettings, *, content_type: str | None = None,
                       filename: str | None = None) -> DecodedImage:
    """Validate and decode one uploaded file. Raises a :class:`~services.common.errors.ServiceError`."""
    if not data:
        raise InvalidImage("the file is empty")
    fmt = sniff_format(data, content_type, filename)
    if fmt is None:
        raise _unsupported(data)
    if fmt.startswith("dicom"):
        arr, width, height = read_dicom(data, max_pixels=settings.max_pixels,
                                        min_side=settings.min_image_side, force=fmt == "dicom-raw")
        try:
            array = to_uint8_rgb(arr)
        except Exception:
            raise InvalidImage("unusable DICOM pixel data (unsupported layout or sample type)") from None
        fmt = "dicom"
    else:
        array, width, height = _decode_raster(data, fmt, settings)
    return DecodedImage(array=array, sha256=hashlib.sha256(data).hexdigest(), format=fmt,
                        width=width, height=height, size_bytes=len(data))
