"""Choosing and checking the out-of-distribution threshold: MRI validation slices vs images that are not MRI."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from diseaseid.data.preprocess import to_uint8_rgb
from diseaseid.serving.ood import image_checks

NATURAL = ("astronaut", "camera", "cat", "chelsea", "coffee", "coins", "grass", "gravel", "horse", "hubble_deep_field",
           "immunohistochemistry", "moon", "page", "rocket", "text", "brick", "colorwheel", "logo", "motorcycle_left")


def non_mri_images(seed: int = 0) -> dict[str, np.ndarray]:
    """Natural photos from scikit-image, random noise, flat colours and text screenshots, as 224x224x3 uint8."""
    import skimage.data

    rng = np.random.default_rng(seed)
    out = {}
    for name in NATURAL:
        fn = getattr(skimage.data, name, None)
        if fn is None:
            continue
        try:
            img = fn()
        except Exception:  # some scikit-image images need an optional download
            continue
        if isinstance(img, tuple):
            img = img[0]
        img = np.asarray(img)
        if img.dtype == bool:
            img = img.astype(np.uint8) * 255
        out[f"photo:{name}"] = to_uint8_rgb(img)
    for i in range(4):
        out[f"noise:uniform{i}"] = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
        g = rng.integers(0, 256, (224, 224), dtype=np.uint8)
        out[f"noise:gray{i}"] = np.repeat(g[..., None], 3, axis=2)
    for name, colour in {"black": 0, "white": 255, "gray": 128, "red": (200, 30, 30), "blue": (20, 40, 200)}.items():
        out[f"flat:{name}"] = np.broadcast_to(np.array(colour, np.uint8), (224, 224, 3)).copy()
    for i, (bg, fg) in enumerate(((255, 0), (0, 255), (240, 30), (30, 220))):
        img = Image.new("L", (224, 224), bg)
        draw = ImageDraw.Draw(img)
        for line in range(12):
            draw.text((6, 6 + 18 * line), f"Patient report line {line} - findings {i * 7 + line}", fill=fg)
        out[f"text:{i}"] = np.asarray(img.convert("RGB"))
    return out


def flags(energy: np.ndarray, images: np.ndarray, threshold: float) -> np.ndarray:
    return np.array([bool(image_checks(img)) or e > threshold for e, img in zip(energy, images)])


def choose_threshold(val_energy: np.ndarray, val_images: np.ndarray, max_mri_flagged: float = 0.05) -> float:
    """The lowest energy threshold that flags at most ``max_mri_flagged`` of validation MRI slices in all
    (image checks included): the slices the image checks pass are sorted by energy, and the threshold sits
    at the energy of the highest one that must stay unflagged."""
    check = np.array([bool(image_checks(img)) for img in val_images])
    allowed = int(np.floor(max_mri_flagged * len(val_energy))) - int(check.sum())
    passed = np.sort(val_energy[~check])[::-1]
    if len(passed) == 0 or allowed <= 0:
        return float(val_energy.max())
    allowed = min(allowed, len(passed) - 1)
    return float(passed[allowed])  # energies strictly above it: at most `allowed` slices
