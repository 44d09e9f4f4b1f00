"""Changes of acquisition, applied to a raw slice before decoding, as a scanner or a viewer's export makes them.

Each perturbation takes the raw slice as float32 intensities in 0..255 (H x W, native size) and a seeded
generator, and returns what a user would upload: an array (any size, uint8, uint16 or float) or encoded bytes
(JPEG). :func:`diseaseid.data.preprocess.to_uint8_rgb` / ``decode_image`` then turn it into the network's input,
exactly as serving does. The levels and where they come from:

* **noise** -- magnitude MR images carry Rician noise (Gudbjartsson & Patz 1995, Magn Reson Med 34:910); in
  the background it is all there is. sigma is given in intensity levels of 255; clinical brain MRI has an SNR
  of roughly 20-60 (white matter over the background noise). Levels 4, 8 and 12 of 255 give the median slice an
  SNR (median head intensity over sigma) of about 37 / 18 / 12 on the dementia slices and 18 / 9 / 6 on the
  darker tumor exports (``python -m dev.noise_snr``): from the clinical range down to noisier than it. All three
  count as realistic: 5% of the clean tumor slices already carry background noise of sigma 11 or more.
* **corners** -- the black corners set to dim grey (12 of 255), as some viewers export them.
* **pad** / **fov** -- a wider field of view: black borders of 16 and 32 px, resized back to the slice's size
  (a 224-mm FOV widened to 256-288 mm); a narrower one: 4% cut from each side.
* **matrix** / **aspect** -- the same slice at another matrix (resampled to 160, 320 and 512 px), and a
  rectangular matrix (black added on two sides to a 1:1.25 aspect).
* **intensity**, **gamma**, **window** -- a scaled intensity (x0.85, x1.15 clipped at 255), a gamma of 0.8 and
  1.25, and a narrower display window (the darkest 5% and the brightest 10% of the range clipped), as exported
  by viewers with other window settings.
* **bias** -- a smooth multiplicative intensity non-uniformity of +-10% and +-20% across the field (Sled et al.
  1998, IEEE TMI 17:87: 10-20% at 1.5 T, more at 3 T).
* **shift**, **rotate** -- 6 px, and 5 and 10 degrees: the head placed differently in the field.
* **jpeg** -- re-encoded at quality 75 and 50.
* **dicom16** -- the slice as 16-bit data (x 16 + 1000, as a scanner stores it), scaled by its own range; and
  with its own window applied (from the 1st to the 99.5th percentile of the stored values, as a viewer's
  automatic window sets it).
"""
from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

Raw = np.ndarray
Upload = np.ndarray | bytes


@dataclass(frozen=True)
class Perturbation:
    family: str
    level: str
    apply: Callable[[Raw, np.random.Generator], Upload]
    realistic: bool = True  # within the levels a clinical export shows (the goals apply to these)
    # The random draw describes the acquisition (a rotation's direction, a shift's, the bias field): every slice of
    # one series shares it (diseaseid.robustness.studies). Otherwise each image draws its own (noise).
    series: bool = False

    @property
    def name(self) -> str:
        return f"{self.family}:{self.level}"


def read_raw(path) -> Raw:
    """A stored slice as the perturbations take it: grey, float32 intensities in 0..255, at its native size."""
    return np.asarray(Image.open(path).convert("L"), dtype=np.float32)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def rician(sigma: float) -> Callable[[Raw, np.random.Generator], Upload]:
    def apply(raw: Raw, rng: np.random.Generator) -> Upload:
        n1, n2 = rng.normal(0, sigma, raw.shape), rng.normal(0, sigma, raw.shape)
        return _u8(np.sqrt((raw + n1) ** 2 + n2 ** 2))
    return apply


def grey_corners(level: float = 12.0) -> Callable[[Raw, np.random.Generator], Upload]:
    def apply(raw: Raw, rng: np.random.Generator) -> Upload:
        h, w = raw.shape
        yy, xx = np.mgrid[:h, :w]
        corner = ((yy + 0.5) / h - 0.5) ** 2 + ((xx + 0.5) / w - 0.5) ** 2 > 0.25
        out = raw.copy()
        out[corner & (raw < level)] = level
        return _u8(out)
    return apply


def _resize(x: np.ndarray, w: int, h: int) -> np.ndarray:
    return np.asarray(Image.fromarray(x.astype(np.float32), "F").resize((w, h), Image.BILINEAR))


def pad(px: int) -> Callable[[Raw, np.random.Generator], Upload]:
    def apply(raw: Raw, rng: np.random.Generator) -> Upload:
        h, w = raw.shape
        return _u8(_resize(np.pad(raw, px), w, h))
    return apply


def narrower_fov(fraction: float) -> Callable[[Raw, np.random.Generator], Upload]:
    def apply(raw: Raw, rng: np.random.Generator) -> Upload:
        h, w = raw.shape
        dy, dx = round(h * fraction), round(w * fraction)
        return _u8(_resize(raw[dy:h - dy, dx:w - dx], w, h))
    return apply


def matrix(side: int) -> Callable[[Raw, np.random.Generator], Upload]:
    def apply(raw: Raw, rng: np.random.Generator) -> Upload:
        h, w = raw.shape
        s = side / max(h, w)
        return _u8(_resize(raw, max(1, round(w * s)), max(1, round(h * s))))
    return apply


def aspect(ratio: float) -> Callable[[Raw, np.random.Generator], Upload]:
    def apply(raw: Raw, rng: np.random.Generator) -> Upload:
        h, w = raw.shape
        extra = max(0, round(h * ratio) - w)
        return _u8(np.pad(raw, ((0, 0), (extra // 2, extra - extra // 2))))
    return apply


def scale(factor: float) -> Callable[[Raw, np.random.Generator], Upload]:
    return lambda raw, rng: _u8(raw * factor)


def gamma(g: float) -> Callable[[Raw, np.random.Generator], Upload]:
    return lambda raw, rng: _u8(255.0 * (raw / 255.0) ** g)


def window(low: float, high: float) -> Callable[[Raw, np.random.Generator], Upload]:
    """Clip the ``low`` fraction of the range below and the ``high`` fraction above, stretch to 0..255."""
    def apply(raw: Raw, rng: np.random.Generator) -> Upload:
        top = float(raw.max()) or 1.0
        lo, hi = low * top, (1 - high) * top
        return _u8((raw - lo) / max(hi - lo, 1e-6) * 255.0)
    return apply


def bias_field(amplitude: float) -> Callable[[Raw, np.random.Generator], Upload]:
    """A smooth random field exp(a x + b y + c xy), its extremes +-``amplitude`` across the image."""
    def apply(raw: Raw, rng: np.random.Generator) -> Upload:
        h, w = raw.shape
        yy, xx = np.mgrid[-1:1:h * 1j, -1:1:w * 1j]
        a, b, c = rng.uniform(-1, 1, 3)
        field = a * xx + b * yy + c * xx * yy
        field = field / max(np.abs(field).max(), 1e-6) * np.log1p(amplitude)
        return _u8(raw * np.exp(field))
    return apply


def shift(px: int) -> Callable[[Raw, np.random.Generator], Upload]:
    def apply(raw: Raw, rng: np.random.Generator) -> Upload:
        angle = rng.uniform(0, 2 * np.pi)
        return _u8(ndimage.shift(raw, (px * np.sin(angle), px * np.cos(angle)), order=1, mode="constant"))
    return apply


def rotate(degrees: float) -> Callable[[Raw, np.random.Generator], Upload]:
    def apply(raw: Raw, rng: np.random.Generator) -> Upload:
        sign = 1 if rng.random() < 0.5 else -1
        return _u8(ndimage.rotate(raw, sign * degrees, reshape=False, order=1, mode="constant"))
    return apply


def jpeg(quality: int) -> Callable[[Raw, np.random.Generator], Upload]:
    def apply(raw: Raw, rng: np.random.Generator) -> Upload:
        buf = io.BytesIO()
        Image.fromarray(_u8(raw), "L").save(buf, "JPEG", quality=quality)
        return buf.getvalue()
    return apply


def dicom16(windowed: bool) -> Callable[[Raw, np.random.Generator], Upload]:
    def apply(raw: Raw, rng: np.random.Generator) -> Upload:
        stored = (raw * 16 + 1000).astype(np.uint16)
        if not windowed:
            return stored
        low, high = (float(v) for v in np.percentile(stored, [1, 99.5]))
        return _u8((stored.astype(np.float32) - low) / max(high - low, 1.0) * 255.0)
    return apply


PERTURBATIONS: tuple[Perturbation, ...] = (
    Perturbation("noise", "sigma 4", rician(4.0)),
    Perturbation("noise", "sigma 8", rician(8.0)),
    Perturbation("noise", "sigma 12", rician(12.0)),
    Perturbation("corners", "grey 12", grey_corners(12.0)),
    Perturbation("pad", "16 px", pad(16)),
    Perturbation("pad", "32 px", pad(32)),
    Perturbation("fov", "4% narrower", narrower_fov(0.04)),
    Perturbation("matrix", "160 px", matrix(160)),
    Perturbation("matrix", "320 px", matrix(320)),
    Perturbation("matrix", "512 px", matrix(512)),
    Perturbation("aspect", "1:1.25", aspect(1.25)),
    Perturbation("intensity", "x0.85", scale(0.85)),
    Perturbation("intensity", "x1.15", scale(1.15)),
    Perturbation("gamma", "0.8", gamma(0.8)),
    Perturbation("gamma", "1.25", gamma(1.25)),
    Perturbation("window", "5%/10% clipped", window(0.05, 0.10)),
    Perturbation("bias", "+-10%", bias_field(0.10), series=True),
    Perturbation("bias", "+-20%", bias_field(0.20), series=True),
    Perturbation("shift", "6 px", shift(6), series=True),
    Perturbation("rotate", "5 deg", rotate(5.0), series=True),
    Perturbation("rotate", "10 deg", rotate(10.0), realistic=False, series=True),
    Perturbation("jpeg", "quality 75", jpeg(75)),
    Perturbation("jpeg", "quality 50", jpeg(50)),
    Perturbation("dicom16", "own range", dicom16(False)),
    Perturbation("dicom16", "own window", dicom16(True)),
)


def by_name(names: list[str] | None) -> tuple[Perturbation, ...]:
    """The perturbations whose name or family is in ``names`` (all when None)."""
    if not names:
        return PERTURBATIONS
    chosen = tuple(p for p in PERTURBATIONS if p.name in names or p.family in names)
    unknown = set(names) - {p.name for p in chosen} - {p.family for p in chosen}
    if unknown:
        raise KeyError(f"unknown perturbation(s) {sorted(unknown)}; choose from "
                       f"{sorted({p.family for p in PERTURBATIONS})} or a name like 'noise:sigma 4'")
    return chosen


def realistic() -> tuple[Perturbation, ...]:
    return tuple(p for p in PERTURBATIONS if p.realistic)


def perturbed_views(raws: list[np.ndarray], seed: int) -> tuple[list[Upload], list[str]]:
    """One randomly chosen realistic perturbation of each raw slice (seeded): (uploads, perturbation names)."""
    rng = np.random.default_rng(seed)
    pool = realistic()
    chosen = [pool[i] for i in rng.integers(0, len(pool), len(raws))]
    return [p.apply(r, rng) for p, r in zip(chosen, raws)], [p.name for p in chosen]
