"""Out-of-distribution checks: cheap image statistics plus a score from the task's detector model.

The score, where ``weights/<task>/ood.json`` and ``ood.safetensors`` are shipped (``FeatureDetector``): the
Mahalanobis distance of the detector model's pooled penultimate features to the nearest class mean of the
task's training slices under their shared within-class covariance (Lee et al. 2018, "A Simple Unified Framework
for Detecting Out-of-Distribution Samples and Adversarial Attacks"), the covariance kept as its leading
principal directions plus one variance for the rest (probabilistic PCA: Tipping & Bishop 1999), so the shipped
statistics stay small. ``python -m diseaseid ood-fit`` fits them and their threshold (docs/ood.md).

Without those statistics (a new task, or statistics fitted on another version of the detector model) the
energy score decides at the threshold in the detector's model card: Liu et al. 2020, "Energy-based
Out-of-distribution Detection" (E(x) = -logsumexp(logits)).

The image checks catch what an MRI slice never is: colourful, flat, or pure noise.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def energy_score(logits):
    """Higher means less like the training data (negative free energy, flipped). N x C logits, a torch tensor
    (-> a tensor) or a numpy array (-> float32 numpy, for serving without torch)."""
    if isinstance(logits, np.ndarray):
        x = logits.astype(np.float32)
        top = x.max(axis=1, keepdims=True)
        return -(top[:, 0] + np.log(np.exp(x - top).sum(axis=1)))
    return -logits.float().logsumexp(dim=1)


def _gray_chroma(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x.astype(float32).mean(axis=2)`` and the mean absolute deviation of the channels from it, equal to
    numpy's to the bit: three float32 channel sums divided by the count in float64 (what ``mean`` does over three
    values), without the strided reductions, about 7x faster on a served image."""
    c = [x[..., k].astype(np.float32) for k in range(3)]
    total = c[0] + c[1]
    total += c[2]
    gray = (total / np.float64(3)).astype(np.float32)
    dev = np.abs(c[0] - gray)
    dev += np.abs(c[1] - gray)
    dev += np.abs(c[2] - gray)
    return gray, (dev / np.float64(3)).astype(np.float32)


# A decision taken from an exact integer statistic where it lies at least this far (relative) from its threshold:
# numpy's float32 figure is within 1e-5 of the exact one, so both decide alike; nearer, numpy's decides.
_MARGIN = 1e-3


def _grey_checks(g8: np.ndarray) -> list[str] | None:
    """``image_checks`` of a half-resolution slice whose three channels are equal (``g8``, H x W uint8), from
    exact integer sums, with the same reasons to the bit: grey means no chroma, the grey level is the channel
    itself, its variances and the neighbour correlation are exact sums of integers (compared with numpy's
    float32 figures' thresholds only where far from them), the border median an integer median. None: a
    figure the message prints is needed (noise-like), or a decision too close to call: the float path decides."""
    n = g8.size
    # Integers: every sum below is exact (far below 2**53) in any order. einsum, not np.dot: a BLAS call here
    # woke OpenBLAS's threads and cost 1.8 ms on the busy 2-core machine.
    g = g8.astype(np.float64)
    s1, s2 = float(g.sum()), float(np.einsum("ij,ij->", g, g))
    var = (n * s2 - s1 * s1) / (n * n)
    reasons = []
    if abs(var - 16.0) <= _MARGIN * 16.0:  # std within 0.05% of 4
        return None
    if var < 16.0:
        reasons.append("almost uniform image")
    last, first = g[:, -1], g[:, 0]
    m = n - len(last)
    sa, sb = s1 - last.sum(), s1 - first.sum()
    saa, sbb = s2 - float(np.einsum("i,i->", last, last)), s2 - float(np.einsum("i,i->", first, first))
    va, vb = (m * saa - sa * sa) / (m * m), (m * sbb - sb * sb) / (m * m)
    if min(abs(va - 1.0), abs(vb - 1.0)) <= _MARGIN:
        return None
    if va > 1.0 and vb > 1.0:
        sab = float(np.einsum("ij,ij->", g[:, :-1], g[:, 1:]))
        corr = (m * sab - sa * sb) / np.sqrt((m * saa - sa * sa) * (m * sbb - sb * sb))
        if corr < 0.25 + _MARGIN:
            return None  # noise-like or near it: the message prints numpy's figure
    border = np.concatenate([g8[:4].ravel(), g8[-4:].ravel(), g8[:, :4].ravel(), g8[:, -4:].ravel()])
    if np.median(border) > 60:
        reasons.append("bright background; MRI slices have a dark background")
    return reasons


def image_checks(img: np.ndarray) -> list[str]:
    """Reasons why a 224x224x3 uint8 image cannot be an MRI slice (empty list when it might be)."""
    # Every statistic below is coarse: half resolution keeps them and quarters the cost on the serving path.
    half = img[::2, ::2]
    c0 = half[..., 0]
    if np.array_equal(c0, half[..., 1]) and np.array_equal(c0, half[..., 2]):  # a grey slice, as MRI is
        found = _grey_checks(np.ascontiguousarray(c0))
        if found is not None:
            return found
    reasons = []
    gray, chroma = _gray_chroma(half)
    # MRI is grayscale: channels agree (JPEG chroma noise stays within a few levels). Measured over the pixels
    # that are not background, so a dark photo with a few colourful objects is caught too.
    lit = gray > 30
    chroma_lit = float(chroma[lit].mean()) if lit.any() else 0.0
    if chroma.mean() > 6.0 or chroma_lit > 3.0:
        reasons.append(f"colour image (mean chroma {max(chroma.mean(), chroma_lit):.1f}); MRI slices are grayscale")
    if gray.std() < 4.0:
        reasons.append("almost uniform image")
    # Pure noise: neighbouring pixels barely correlate; anatomy is smooth.
    a, b = gray[:, :-1].ravel(), gray[:, 1:].ravel()
    if a.std() > 1 and b.std() > 1:
        corr = float(np.corrcoef(a, b)[0, 1])
        if corr < 0.25:
            reasons.append(f"noise-like image (neighbour correlation {corr:.2f})")
    # An MRI slice has a dark background around the head.
    border = np.concatenate([gray[:4].ravel(), gray[-4:].ravel(), gray[:, :4].ravel(), gray[:, -4:].ravel()])
    # (validation MRI: border median at most 36 of 255)
    if np.median(border) > 60:
        reasons.append("bright background; MRI slices have a dark background")
    return reasons


# Which shipped model's features decide, for every request of a task, whichever model answers it (so the
# student and the teacher of a task never disagree on whether an image is a brain MRI): the tumor student
# (Lite0's first five stages, fine-tuned on tumor slices of every plane), for both tasks, each task with its own
# statistics (fitted on that task's training slices). Its features flag more non-MRI images than the tumor
# teacher's at the same share of MRI slices (calibration set, tumor: 97.1% against 95.1%; dementia: 100% with
# both), and it is the cheapest model, so the tumor student answers with one forward pass. The energy score alone
# (the tumor teacher's) flagged 68.5% of 89 new non-MRI images (scripts/ood_compare.py, removed since: git show
# 2f5cc65:scripts/ood_compare.py); the dementia models are linear heads on frozen features whose energy is
# *lower* on non-MRI images, useless as an upper threshold. The feature distance and the comparison: docs/ood.md.
DETECTORS: dict[str, tuple[str, str]] = {"tumor": ("tumor", "student"), "dementia": ("tumor", "student")}
DETECTOR_ROLE = "teacher"  # tasks not listed: their own teacher


def detector_of(task: str) -> tuple[str, str]:
    """(task, role) of the shipped model whose features (or, without statistics, energy score) decide OOD for
    every request of ``task``."""
    return DETECTORS.get(task, (task, DETECTOR_ROLE))


# -- the feature-distance detector -------------------------------------------------------------------------------
STATS_STEM = "ood"  # weights/<task>/ood.json + ood.safetensors


_EXACT_FLOAT32 = 2 ** 24  # float32 holds every integer below this
IMAGE_STATISTICS = ("log mean neighbour difference / mean", "log mean |Laplacian| / mean", "foreground share",
                    "log std / mean")


def image_statistics(img: np.ndarray) -> np.ndarray:
    """Four texture and contrast figures of the foreground (gray > 25) of a 224 x 224 x 3 uint8 image, relative
    to its mean brightness: what tells a textured photo cut to an oval (grass, brick, a page of text) from a
    slice, which deep features alone confuse. Zeros when there is almost no foreground."""
    c = np.ascontiguousarray(np.asarray(img)[..., 0])
    fg = c > 25
    count = int(np.count_nonzero(fg))
    if count < 100:
        return np.zeros(len(IMAGE_STATISTICS))
    # The grey levels, their steps and Laplacians are integers: summed exactly as integers, and equal to numpy's
    # float32 means (pairwise sums of integers are exact while the total stays below 2**24; a mean is then that
    # total over the count, one rounding either way). Over 2**24 (never for the steps or the grey levels of a
    # 224 x 224 image), numpy's float32 means.
    c16 = c.astype(np.int16)
    pairs = fg[:, :-1] & fg[:, 1:]
    steps = np.abs(c16[:, :-1] - c16[:, 1:])
    lap = np.abs(4 * c16[1:-1, 1:-1] - c16[:-2, 1:-1] - c16[2:, 1:-1] - c16[1:-1, :-2] - c16[1:-1, 2:])
    inner = fg[1:-1, 1:-1]
    n_step, n_lap = int(np.count_nonzero(pairs)), int(np.count_nonzero(inner))
    step_total = int(np.sum(steps, where=pairs, dtype=np.int64))
    lap_total = int(np.sum(lap, where=inner, dtype=np.int64))
    values = c[fg]
    grey_total = int(values.sum(dtype=np.int64))
    fg_values = values.astype(np.float32)
    if max(step_total, lap_total, grey_total) < _EXACT_FLOAT32:
        step_mean = np.float32(step_total) / np.float32(n_step) if n_step else np.float32(0)
        lap_mean = np.float32(lap_total) / np.float32(n_lap) if n_lap else np.float32(0)
        mean = float(np.float32(grey_total) / np.float32(count))
    else:
        g = c.astype(np.float32)
        step = np.abs(g[:, :-1] - g[:, 1:])[pairs]
        lap32 = np.abs(4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:])[inner]
        mean = float(fg_values.mean())
        # No pair of neighbouring foreground pixels (scattered dots) or no foreground inside the frame: no steps
        # or curvature measured, 0 (not the NaN of an empty mean, which would make every distance NaN).
        step_mean = step.mean() if step.size else np.float32(0)
        lap_mean = lap32.mean() if lap32.size else np.float32(0)
    return np.array([np.log(step_mean / mean + 1e-6), np.log(lap_mean / mean + 1e-6), count / fg.size,
                     np.log(fg_values.std() / mean + 1e-6)])


@dataclass(frozen=True)
class FeatureDetector:
    """Squared Mahalanobis distance to the nearest class mean, with the shared covariance in PPCA form:
    ``Sigma = V diag(variances) V^T + residual_variance (I - V V^T)`` (V: F x k, orthonormal columns), plus,
    where fitted, ``image_weight`` times the squared Mahalanobis distance of the ``image_statistics`` to
    their training mean (``image_mean``, ``image_precision``).

    ``score`` is the square root of the sum; above ``threshold`` the image is flagged."""

    means: np.ndarray  # C x F
    basis: np.ndarray  # F x k
    variances: np.ndarray  # k
    residual_variance: float
    threshold: float
    card: dict
    image_mean: np.ndarray | None = None  # S
    image_precision: np.ndarray | None = None  # S x S
    image_weight: float = 0.0

    def feature_distance2(self, features: np.ndarray) -> np.ndarray:
        """N x F pooled features -> N squared distances to the nearest class mean (float64)."""
        x = np.asarray(features, np.float64)
        best = np.full(len(x), np.inf)
        for mean in self.means.astype(np.float64):
            diff = x - mean
            proj = diff @ self.basis
            within = (proj ** 2 / self.variances).sum(1)
            rest = np.maximum((diff ** 2).sum(1) - (proj ** 2).sum(1), 0) / self.residual_variance
            best = np.minimum(best, within + rest)
        return best

    def image_distance2(self, images: np.ndarray) -> np.ndarray:
        if self.image_mean is None or not self.image_weight:
            return np.zeros(len(images))
        diff = np.stack([image_statistics(x) for x in images]) - self.image_mean
        return np.einsum("ij,jk,ik->i", diff, self.image_precision, diff)

    def score(self, features: np.ndarray, images: np.ndarray | None = None) -> np.ndarray:
        """N x F pooled features (and the N images, when image statistics are fitted) -> N scores."""
        total = self.feature_distance2(features)
        if self.image_mean is not None and self.image_weight:
            if images is None:
                raise ValueError("these statistics include image statistics: pass the images too")
            total = total + self.image_weight * self.image_distance2(images)
        # a distance that cannot be computed (NaN features) is as unusual as it gets: flagged, never passed
        return np.where(np.isnan(total), np.inf, np.sqrt(total))

    def reason(self, score: float, detector_name: str) -> str:
        return (f"unlike the brain MRI slices the {detector_name} detector was fitted on "
                f"(feature distance {score:.1f} > {self.threshold:.1f})")

    @property
    def detector(self) -> dict:
        """{"task", "role", "version"} of the model whose features these statistics describe."""
        return self.card["detector"]

    def save(self, stem: Path) -> None:
        from safetensors.numpy import save_file

        stem.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"means": self.means.astype(np.float32), "basis": self.basis.astype(np.float32),
                  "variances": self.variances.astype(np.float32)}
        if self.image_mean is not None:
            arrays["image_mean"] = np.asarray(self.image_mean, np.float64)
            arrays["image_precision"] = np.asarray(self.image_precision, np.float64)
        save_file(arrays, str(stem.with_suffix(".safetensors")))
        card = {**self.card, "threshold": self.threshold, "residual_variance": self.residual_variance,
                "image_weight": self.image_weight}
        stem.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")

    def problem(self) -> str | None:
        """What makes these statistics unusable, or None: shapes that do not fit together (which would fail or,
        where numpy broadcasts, score wrongly), non-finite or non-positive figures (a NaN threshold flags
        nothing), an image weight without image statistics, no detector version to match."""
        c, f = self.means.shape if self.means.ndim == 2 else (0, 0)
        k = self.basis.shape[1] if self.basis.ndim == 2 else -1
        if not c or not f:
            return f"means of shape {self.means.shape}, not classes x features"
        if self.basis.shape != (f, k) or k > f or self.variances.shape != (k,):
            return f"basis {self.basis.shape} and variances {self.variances.shape} do not fit means {self.means.shape}"
        if not (np.all(np.isfinite(self.variances)) and np.all(self.variances > 0)
                and np.isfinite(self.residual_variance) and self.residual_variance > 0):
            return "variances not all finite and positive"
        if not np.isfinite(self.threshold):
            return f"threshold {self.threshold}"
        if not (np.isfinite(self.image_weight) and self.image_weight >= 0):
            return f"image weight {self.image_weight}"
        s = len(IMAGE_STATISTICS)
        if self.image_mean is None:
            if self.image_precision is not None or self.image_weight:
                return "image precision or weight without an image mean"
        elif (np.shape(self.image_mean), np.shape(self.image_precision)) != ((s,), (s, s)):
            return (f"image mean {np.shape(self.image_mean)} and precision {np.shape(self.image_precision)}, "
                    f"not ({s},) and ({s}, {s})")
        if not isinstance(self.card.get("detector"), dict) or "version" not in self.card["detector"]:
            return "no detector version"
        return None

    @classmethod
    def load(cls, stem: Path) -> FeatureDetector:
        """``stem``.json + .safetensors. FileNotFoundError when either is missing; ValueError, naming the files
        and what is wrong, when one is unreadable or the statistics are unusable (``problem``)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            card = json.loads(stem.with_suffix(".json").read_text())
            arrays = load_file(str(stem.with_suffix(".safetensors")))
            found = cls(means=arrays["means"], basis=arrays["basis"].astype(np.float64),
                        variances=arrays["variances"].astype(np.float64),
                        residual_variance=float(card["residual_variance"]), threshold=float(card["threshold"]),
                        card=card, image_mean=arrays.get("image_mean"),
                        image_precision=arrays.get("image_precision"),
                        image_weight=float(card.get("image_weight", 0.0)))
        except (ValueError, KeyError, TypeError, AttributeError, SafetensorError) as e:
            raise ValueError(f"OOD statistics {stem}.json/.safetensors unreadable ({type(e).__name__}: {e}); "
                             "rerun `python -m diseaseid ood-fit`") from e
        problem = found.problem()
        if problem:
            raise ValueError(f"OOD statistics {stem}.json/.safetensors unusable: {problem}; rerun "
                             "`python -m diseaseid ood-fit`")
        return found


def load_feature_detector(task: str, weights_dir: Path, detector_version: str) -> FeatureDetector | None:
    """``weights_dir/<task>/ood.*`` when shipped and fitted on features of ``detector_version``; else None
    (logged: the energy score at the card threshold decides then, until ``diseaseid ood-fit`` is rerun)."""
    stem = weights_dir / task / STATS_STEM
    if not stem.with_suffix(".json").exists():
        return None
    found = FeatureDetector.load(stem)
    if found.detector.get("version") != detector_version:
        log.warning("OOD statistics %s were fitted on detector version %s, not the shipped %s: ignored; rerun "
                    "`python -m diseaseid ood-fit --task %s`", stem, found.detector.get("version"),
                    detector_version, task)
        return None
    return found
