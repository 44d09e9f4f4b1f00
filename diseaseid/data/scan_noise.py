"""Scanner noise in the raw slice, before pre-processing: noisy copies of a training set, decoded as served.

A magnitude image's noise is added by the scanner to the whole raw slice; serving then finds the head, crops it,
resizes it to the network's size and standardises its intensity (:mod:`diseaseid.data.head`). Noise added to the
pre-processed tensor (:func:`diseaseid.data.augment.acquisition`) misses what those steps do to it: resized with
the head, it is correlated between neighbouring pixels, scaled by the head's intensity factor, and it moves the
head's 99th percentile. The tumor teacher, whose fine-tune saw tensor noise up to sigma 20 of 255, lost 2.1 points
on all validation slices under raw Rician noise of sigma 12 (one draw), against 1.5 under noise of the same sigma,
times the head's intensity factor, added to its crop's head (2026-12-05, a /tmp script): the copies here let
training see the noise the way serving does.

Each copy of a slice is its raw grey values with Rician noise (the robustness benchmark's own
:func:`~diseaseid.robustness.perturbations.rician`), then :func:`~diseaseid.data.head.head_crop`. Copy ``k`` of
``copies`` draws its sigma uniformly in ``[k, k + 1] x sigma_max / copies`` (every level is covered for every
slice), seeded per slice and copy. They are computed once and cached on disk, keyed by the images' key (files and
pre-processing revision), the levels and the seed.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from diseaseid.data.head import grey, head_crop
from diseaseid.data.preprocess import IMAGE_SIZE, as_uint8_rgb, open_image
from diseaseid.paths import cache_dir


def copy_sigma(index: int, copy: int, copies: int, sigma_max: float, seed: int) -> float:
    """The noise sigma (of 255) of copy ``copy`` of slice ``index``."""
    rng = np.random.default_rng([seed, index, copy, 0])
    return float((copy + rng.random()) * sigma_max / copies)


def noisy_copy(raw: np.ndarray, index: int, copy: int, copies: int, sigma_max: float, seed: int,
               size: int = IMAGE_SIZE) -> np.ndarray:
    """Copy ``copy`` of one raw slice (H x W grey, float or uint8): Rician noise, then the serving path's head
    crop; ``size`` x ``size`` x 3 uint8."""
    from diseaseid.robustness.perturbations import rician

    sigma = copy_sigma(index, copy, copies, sigma_max, seed)
    rng = np.random.default_rng([seed, index, copy, 1])
    return head_crop(rician(sigma)(np.asarray(raw, np.float32), rng), size)


def raw_grey(path: str | Path) -> np.ndarray:
    """A stored slice's grey values (H x W float32), as :func:`open_image` and the serving path read them."""
    return grey(as_uint8_rgb(open_image(path)))


def scan_noise_copies(root: Path, files: list[str], images_key: str, sigma_max: float, copies: int,
                      seed: int = 0, threads: int = 2) -> np.ndarray:
    """``copies`` x N x 224 x 224 x 3 uint8: each file's noisy copies (module docstring), cached in the cache
    directory."""
    if copies < 1 or not sigma_max > 0:
        raise ValueError(f"scanner-noise copies need copies >= 1 and sigma_max > 0 (got {copies}, {sigma_max})")
    cache = cache_dir() / f"scan-noise-{images_key}-s{sigma_max:g}-k{copies}-seed{seed}-{IMAGE_SIZE}.npy"
    if cache.exists():
        return np.load(cache)

    def one(item: tuple[int, str]) -> list[np.ndarray]:
        index, name = item
        raw = raw_grey(root / name)
        return [noisy_copy(raw, index, k, copies, sigma_max, seed) for k in range(copies)]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        per_file = list(pool.map(one, enumerate(files)))
    out = np.stack([np.stack([c[k] for c in per_file]) for k in range(copies)])
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, out)
    tmp.replace(cache)
    return out
