"""Uploaded bytes -> a model-ready 224x224x3 uint8 image, with the facts a response reports about the input.

:func:`decode_image_bytes` is synchronous and CPU-bound (run it off the event loop). It sniffs the format
from the bytes themselves (clients often send ``application/octet-stream``), refuses what is not JPEG, PNG or
DICOM (415), reads the header first so that an image over the pixel cap is refused before any pixel is
decoded, and refuses empty, undecodable or degenerate images (422).

A small file can still be a large image (a black 7,900 x 7,900 PNG is 182 KB), so the decoder does as little
as the format allows: a JPEG is decoded by libjpeg straight at 1/2, 1/4 or 1/8 scale (draft mode) when the
image is that much larger than the model's input; a PNG has no such mode, so it is decoded once and at once
box-reduced by an integer factor, which drops the full-size copy before the colour conversion and the final
resize. Images no more than twice the model's size on either side are decoded exactly as training did.
:func:`probe_image` reads only the header: the services use it to decide whether an upload is a heavy
decode (see :mod:`services.common.uploads`).
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from diseaseid.data.head import head_crop
from diseaseid.data.preprocess import IMAGE_SIZE, to_uint8_rgb
from services.common.dicom import read_dicom
from services.common.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType
from services.common.settings import ServiceSettings

FORMATS = ("jpeg", "png", "dicom")
_DICOM_TYPES = ("application/dicom", "application/dicom+octet-stream")
_DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
# Recognised only to name them in the 415 message.
_OTHER_MAGIC = ((b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
                (b"%PDF", "PDF"), (b"PK\x03\x04", "ZIP"), (b"\x1f\x8b", "gzip"))
# Decode no larger than this before the final resize: the bilinear resize to IMAGE_SIZE then still averages
# over at least 2x2 source pixels, as it does for the slices the models were trained on.
DECODE_TARGET = 2 * IMAGE_SIZE
# Modes Image.reduce() handles; others (16-bit, palette, 1-bit) are left to the usual conversion.
_REDUCIBLE = ("L", "LA", "RGB", "RGBA", "I", "F")


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """An accepted upload: the model input plus what the response says about the file."""

    array: np.ndarray  # 224 x 224 x 3 uint8 RGB
    sha256: str
    format: str  # "jpeg" | "png" | "dicom"
    width: int  # of the original image
    height: int
    size_bytes: int
    # DICOM only: the series the slice belongs to (services.common.dicom.series_facts), for the study checks;
    # never in a response (it may identify a patient).
    series: dict | None = None

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


@dataclass(frozen=True, slots=True)
class ImageProbe:
    """What the header says, before any pixel is decoded."""

    format: str  # "jpeg" | "png" | "dicom"
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _open_header(data: bytes, fmt: str, settings: ServiceSettings) -> Image.Image:
    """The image with only its header read; over the pixel cap or too small is refused here."""
    # No warnings.catch_warnings here: it is not thread-safe, and a bomb warning promoted to an error
    # elsewhere is caught below all the same.
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(f"the {fmt.upper()} image is a decompression bomb; not decoded") from None
    except Exception:
        raise InvalidImage(f"cannot decode the {fmt.upper()} image: it is corrupt or truncated") from None
    if width * height > settings.max_pixels:
        img.close()
        limit = settings.max_pixels
        raise ImageTooLarge(f"image is {width}x{height} pixels, over the limit of {limit:,} "
                            "(MRI slices are far smaller); not decoded")
    _check_side(width, height, settings)
    return img


def _decode_raster(data: bytes, fmt: str, settings: ServiceSettings) -> tuple[np.ndarray, int, int]:
    img = _open_header(data, fmt, settings)
    width, height = img.size
    try:
        with img:
            # JPEG: libjpeg scales by 1/2, 1/4 or 1/8 while decoding, keeping both sides >= DECODE_TARGET.
            img.draft(None, (DECODE_TARGET, DECODE_TARGET))
            img.load()
            factor = min(img.width, img.height) // DECODE_TARGET
            if factor >= 2 and img.mode in _REDUCIBLE:
                img = img.reduce(factor)  # box average; the full-size pixels are freed with the original
            array = _model_input(img)
    except Exception:  # ImageDecodeError, and whatever a corrupt EXIF block or odd mode raises
        raise InvalidImage(f"cannot decode the {fmt.upper()} image: it is corrupt or truncated") from None
    return array, width, height


def _model_input(img: Image.Image) -> np.ndarray:
    """:func:`~diseaseid.data.preprocess.to_uint8_rgb` of a decoded image, the same bytes. A grey image (most MRI
    JPEGs) goes to the head crop as its one channel: ``pil_to_rgb`` would turn it upright (EXIF) and copy it into
    three equal channels, which the head crop checks and reads back as that one channel; here it is only turned
    upright (tests/services/test_decode_fast.py pins the two against each other)."""
    if img.mode == "L":
        upright = ImageOps.exif_transpose(img) or img
        if upright.mode == "L" and upright.width >= 1 and upright.height >= 1:
            return head_crop(np.asarray(upright), IMAGE_SIZE)
    return to_uint8_rgb(img)


def _known_format(data: bytes, content_type: str | None, filename: str | None) -> str:
    """The upload's format, or the 422 (empty) / 415 (unsupported) refusal every reader gives."""
    if not data:
        raise InvalidImage("the file is empty")
    fmt = sniff_format(data, content_type, filename)
    if fmt is None:
        raise _unsupported(data)
    return fmt


def probe_image(data: bytes, settings: ServiceSettings, *, content_type: str | None = None,
                filename: str | None = None) -> ImageProbe:
    """Format and size from the header alone (cheap); the same 413/415/422 refusals as decoding.

    A DICOM's size is not read here (its header parse is most of the work); its byte count stands in for
    the pixel count, which is about right for the uncompressed slices DICOM usually holds."""
    fmt = _known_format(data, content_type, filename)
    if fmt.startswith("dicom"):
        return ImageProbe("dicom", len(data), 1)
    with _open_header(data, fmt, settings) as img:
        return ImageProbe(fmt, *img.size)


def refuse_oversized_png(data: bytes, settings: ServiceSettings) -> None:
    """:class:`ImageTooLarge` for a PNG whose IHDR declares more than the pixel cap: 24 bytes read, no
    library call, cheap enough for the event loop (a flood of such files then never reaches a thread)."""
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if width * height > settings.max_pixels:
            raise ImageTooLarge(f"image is {width}x{height} pixels, over the limit of {settings.max_pixels:,} "
                                "(MRI slices are far smaller); not decoded")


def _check_side(width: int, height: int, settings: ServiceSettings) -> None:
    if min(width, height) < settings.min_image_side:
        side = settings.min_image_side
        raise InvalidImage(f"image is {width}x{height} pixels; at least {side}x{side} is needed")


def decode_image_bytes(data: bytes, settings: ServiceSettings, *, content_type: str | None = None,
                       filename: str | None = None) -> DecodedImage:
    """Validate and decode one uploaded file. Raises a :class:`~services.common.errors.ServiceError`."""
    fmt = _known_format(data, content_type, filename)
    if fmt.startswith("dicom"):
        arr, width, height, series = read_dicom(data, max_pixels=settings.max_pixels,
                                        min_side=settings.min_image_side, force=fmt == "dicom-raw")
        try:
            array = to_uint8_rgb(arr)
        except Exception:
            raise InvalidImage("unusable DICOM pixel data (unsupported layout or sample type)") from None
        fmt = "dicom"
    else:
        array, width, height = _decode_raster(data, fmt, settings)
        series = None
    return DecodedImage(array=array, sha256=hashlib.sha256(data).hexdigest(), format=fmt,
                        width=width, height=height, size_bytes=len(data), series=series)
