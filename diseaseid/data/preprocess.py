"""Pre-processing shared by training and serving.

Any JPEG/PNG (8- or 16-bit, grayscale, palette, RGB or RGBA, any size) becomes a 224x224x3 uint8 array of
the head alone (:mod:`diseaseid.data.head`: background zeroed, cropped square around the head, intensity
standardised inside it); ``diseaseid.data.tensors.normalize`` turns a batch of those into ImageNet-normalised
float tensors (torch stays out of decoding). No flips: where a lesion lies matters, so the head keeps its
orientation and aspect ratio.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from diseaseid.data.head import PREPROCESS_NAME, head_crop
from diseaseid.limits import MAX_PIXELS

IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREPROCESS = {"name": PREPROCESS_NAME, "size": IMAGE_SIZE, "steps": [
    "decode (16-bit and float scaled by their own range; alpha over black)",
    "head mask: Gaussian smoothing (sigma 2 px at <=256 px), threshold at the background level + 0.12 x "
    "(99.5th percentile - background level), opening and closing with a 3-px disk, largest region, holes filled",
    "background outside the mask set to 0",
    "crop: the mask's bounding box + 4% margin, made square around its centre (zero padding)",
    "intensity: scaled so the head's 99th percentile is 230",
    "resize to 224 x 224 (bilinear), 3 equal channels for grey input",
    "ImageNet mean/std normalisation"]}
"""What every model card trained on this pre-processing records (``card["preprocess"]``)."""


class ImageDecodeError(ValueError):
    """The bytes are not a usable image (undecodable, empty, too large)."""


def _to_8bit(arr: np.ndarray) -> np.ndarray:
    """Scale a high-bit-depth or float image to 0..255 by its own range (MRI intensities are relative)."""
    arr = arr.astype(np.float64)
    finite = np.isfinite(arr)
    if not finite.any():
        return np.zeros(arr.shape, np.uint8)
    lo, hi = float(arr[finite].min()), float(arr[finite].max())
    arr = np.where(finite, arr, lo)
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.clip((arr - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8)


def pil_to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; alpha is composited over black (the background of an MRI slice)."""
    img = ImageOps.exif_transpose(img) or img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = _to_8bit(np.asarray(img))
        return Image.fromarray(arr, "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        return img.convert("RGB")
    return img


def as_uint8_rgb(img: Image.Image | np.ndarray) -> np.ndarray:
    """A PIL image or an array (HxW or HxWxC, any dtype) -> H x W x 3 uint8 at its own size: 16-bit and float
    data scaled by their own range, palettes looked up, alpha composited over black."""
    if isinstance(img, np.ndarray):
        arr = img
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.dtype != np.uint8:
            arr = _to_8bit(arr)
        if arr.ndim == 2:
            img = Image.fromarray(arr, "L")
        elif arr.ndim == 3 and arr.shape[2] in (3, 4):
            img = Image.fromarray(np.ascontiguousarray(arr), "RGB" if arr.shape[2] == 3 else "RGBA")
        else:
            raise ImageDecodeError(f"unsupported array shape {arr.shape}")
    if img.width < 1 or img.height < 1:
        raise ImageDecodeError("image has no pixels")
    return np.asarray(pil_to_rgb(img), dtype=np.uint8)


def to_uint8_rgb(img: Image.Image | np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """A PIL image or an array (HxW or HxWxC, any dtype) -> ``size`` x ``size`` x 3 uint8 of the head
    (:func:`as_uint8_rgb`, then :func:`diseaseid.data.head.head_crop`)."""
    return head_crop(as_uint8_rgb(img), size)


def open_image(source: bytes | str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image, refusing decompression bombs before decoding pixels."""
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
            if img.width * img.height > max_pixels:
                raise ImageDecodeError(
                    f"image is {img.width}x{img.height} pixels, over the limit of {max_pixels:,} pixels")
            img.load()
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"image too large: {exc}") from exc
    except Exception as exc:  # PIL raises many types for corrupt data
        raise ImageDecodeError(f"cannot decode image: {exc}") from exc
    return img


def decode_image(source: bytes | str | Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """Bytes or a path of a JPEG/PNG -> ``size`` x ``size`` x 3 uint8 RGB."""
    return to_uint8_rgb(open_image(source), size)
