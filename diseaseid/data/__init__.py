"""Data: decoding and pre-processing, image-folder data sets, subjects, near-duplicate groups, splits."""
from diseaseid.data.preprocess import (
    IMAGE_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageDecodeError,
    as_uint8_rgb,
    decode_image,
    to_uint8_rgb,
)

__all__ = [
    "IMAGE_SIZE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageDecodeError",
    "as_uint8_rgb",
    "decode_image",
    "to_uint8_rgb",
]
