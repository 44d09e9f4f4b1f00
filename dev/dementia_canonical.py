"""Would a canonical input (rotation undone, intensities matched to a reference histogram, fine detail blurred)
make the dementia student's answers hold still under acquisition changes?

    .venv/bin/python -m dev.dementia_canonical

Frozen shipped ConvNet1 convolutions; for each input transform the slice head is fitted as shipped (clean slices
and three perturbed copies, every subject but the robustness sample's) on the transformed images, and scored
on the transformed sample as ``dev.dementia_head_copies`` scores it (about 5 minutes per transform on 2 cores).
An experiment, not served. Measured 2026-12-06 (the two combined transforms were not run: each part alone lost):

    transform                     clean balanced  mean changed  worst                 changes above 10%
    none (as shipped)             53.3%           8.8%          21.3% rotate 5 deg     9
    match (histogram)             47.0%           10.8%         24.7% rotate 5 deg     15
    align (rotation undone)       49.0%           9.8%          18.3% gamma 1.25       15
    blur (sigma 1.5 px)           46.7%           9.4%          25.3% rotate 5 deg     10

The training slices' head axis lies at -89.2 degrees (median; interquartile range 0.7 degree: the OASIS slices are
atlas-registered), so undoing a rotation is well defined here; it took the 5-degree rotation out of the five
worst changes, but the resampling it adds to every slice moved other answers, and clean accuracy fell with
every transform: convolutions trained on the plain crops do not carry over, and a student trained on the
canonical input would be the real test.
"""
from __future__ import annotations

import sys
import time

import cv2
import numpy as np

LEVELS = 256


def head_quantiles(img: np.ndarray) -> np.ndarray | None:
    g = img[..., 0]
    v = g[g > 0]
    return None if v.size < 100 else np.quantile(v, np.linspace(0, 1, LEVELS))


def match(img: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Head intensities mapped through their own mid-rank CDF onto ``ref``'s quantile function."""
    g = img[..., 0]
    head = g > 0
    hist = np.bincount(g[head], minlength=256).astype(np.float64)
    if hist.sum() < 100:
        return img
    cdf = np.cumsum(hist) / hist.sum()
    mid = cdf - hist / hist.sum() / 2
    lut = np.interp(mid, np.linspace(0, 1, LEVELS), ref)
    lut = np.clip(np.round(lut), 1, 255).astype(np.uint8)
    lut[0] = 0
    out = np.where(head, lut[g], 0).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=2)


def angle(mask: np.ndarray) -> float:
    ys, xs = np.nonzero(mask)
    x, y = xs - xs.mean(), ys - ys.mean()
    return 0.5 * np.degrees(np.arctan2(2 * (x * y).mean(), (x * x).mean() - (y * y).mean()))


def align(img: np.ndarray, target: float, limit: float = 15.0) -> np.ndarray:
    """Rotate the head about its centroid so its principal axis lies at ``target`` degrees, re-crop square."""
    g = img[..., 0]
    mask = g > 0
    if mask.sum() < 100:
        return img
    a = angle(mask)
    d = ((a - target + 90) % 180) - 90
    if abs(d) > limit:
        return img
    ys, xs = np.nonzero(mask)
    big = cv2.copyMakeBorder(g, 32, 32, 32, 32, cv2.BORDER_CONSTANT, value=0)
    m = cv2.getRotationMatrix2D((float(xs.mean()) + 32, float(ys.mean()) + 32), d, 1.0)
    r = cv2.warpAffine(big, m, big.shape[::-1], flags=cv2.INTER_LINEAR, borderValue=0)
    ys, xs = np.nonzero(r > 0)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = int(round(max(y1 - y0, x1 - x0) * 1.04))
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    sq = np.zeros((side, side), np.uint8)
    sy, sx = int(round(cy - side / 2)), int(round(cx - side / 2))
    ya, xa = max(sy, 0), max(sx, 0)
    yb, xb = min(sy + side, r.shape[0]), min(sx + side, r.shape[1])
    sq[ya - sy:yb - sy, xa - sx:xb - sx] = r[ya:yb, xa:xb]
    out = cv2.resize(sq, (224, 224), interpolation=cv2.INTER_LINEAR)
    out[cv2.resize((sq > 0).astype(np.uint8), (224, 224), interpolation=cv2.INTER_NEAREST) == 0] = 0
    return np.repeat(out[..., None], 3, axis=2)


def moments(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The head mask's centroid (x, y), its principal axes' standard deviations (major first) and the axes as the
    columns of a rotation (the minor axis the major turned by +90 degrees: no reflection)."""
    ys, xs = np.nonzero(mask)
    centre = np.array([xs.mean(), ys.mean()])
    vals, vecs = np.linalg.eigh(np.cov(np.stack([xs, ys]).astype(np.float64)))
    major = vecs[:, 1]
    if major[1] < 0:  # the training heads' major axis is vertical: point it down, as the target's
        major = -major
    axes = np.stack([major, np.array([-major[1], major[0]])], axis=1)
    return centre, np.sqrt(vals[::-1]), axes


def norm(img: np.ndarray, target_axes: np.ndarray, target_sd: np.ndarray, limit: float = 15.0,
         stretch: float = 0.2) -> np.ndarray:
    """The head mapped by rotation and scaling along its principal axes onto the training heads' median shape
    (axes ``target_axes``, standard deviations ``target_sd``, centred): undoes a rotation, a shift and an
    anisotropic scaling (another pixel aspect, padding to another aspect ratio, resized back). Left alone when
    the rotation exceeds ``limit`` degrees or a scale ``1 +- stretch``."""
    g = img[..., 0]
    mask = g > 0
    if mask.sum() < 100:
        return img
    centre, sd, axes = moments(mask)
    scale = target_sd / sd
    turn = target_axes @ axes.T
    if abs(np.degrees(np.arctan2(turn[1, 0], turn[0, 0]))) > limit or np.any(np.abs(scale - 1) > stretch):
        return img
    a = target_axes @ np.diag(scale) @ axes.T  # input offsets from the centroid -> output offsets
    h, w = g.shape
    m = np.concatenate([a, (np.array([w / 2, h / 2]) - a @ centre)[:, None]], axis=1)
    out = cv2.warpAffine(g, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    inside = cv2.warpAffine(mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
    out[inside == 0] = 0
    return np.repeat(out[..., None], 3, axis=2)


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    g = img[..., 0]
    head = g > 0
    b = cv2.GaussianBlur(g.astype(np.float32), (0, 0), sigma)
    w = cv2.GaussianBlur(head.astype(np.float32), (0, 0), sigma)
    out = np.where(head, np.clip(np.round(b / np.maximum(w, 1e-3)), 1, 255), 0).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=2)


def target_shape(images) -> tuple[np.ndarray, np.ndarray]:
    """The median head's principal axes (as a rotation) and standard deviations over ``images``."""
    shapes = [moments(im[..., 0] > 0) for im in images if (im[..., 0] > 0).sum() >= 100]
    sd = np.median([s[1] for s in shapes], axis=0)
    major = np.median([s[2][:, 0] for s in shapes], axis=0)
    major /= np.linalg.norm(major)
    return np.stack([major, np.array([-major[1], major[0]])], axis=1), sd


def canonical_steps(ref: np.ndarray, target: float, shape: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """The single steps by name (``align``, ``match``, ``blur1``, ``blur1.5``, and ``norm`` where ``shape``, from
    :func:`target_shape`, is given) for a reference quantile function ``ref`` and a target head angle
    ``target``."""
    steps = {"align": lambda im: align(im, target), "match": lambda im: match(im, ref),
             "blur1": lambda im: blur(im, 1.0), "blur1.5": lambda im: blur(im, 1.5)}
    if shape is not None:
        steps["norm"] = lambda im: norm(im, *shape)
    return steps


def canonical(name: str, steps: dict):
    """The transform ``name`` (``none``, or steps joined by ``+``, applied left to right) of one image."""
    chain = [] if name == "none" else [steps[step] for step in name.split("+")]

    def apply(im: np.ndarray) -> np.ndarray:
        for step in chain:
            im = step(im)
        return im

    return apply


def main(which: list[str]) -> None:
    from dev.dementia_head_copies import change_report, held_out, sample_images
    from diseaseid.paths import weights_dir
    from diseaseid.robustness.evaluate import perturbed_images
    from diseaseid.train.embeddings import PERTURBED_SEEDS, model_features
    from diseaseid.train.subject_heads import LinearHead

    start = time.time()
    h = held_out(weights_dir() / "dementia" / "student.safetensors")
    ds, model, train = h.ds, h.model, h.train
    l2 = float(h.card["training"]["l2"])
    clean = ds.images
    copies = [perturbed_images(ds, s)[0] for s in PERTURBED_SEEDS]
    sample = sample_images(h.sample)
    print(f"images ready in {time.time() - start:.0f} s", flush=True)
    qs = [q for q in (head_quantiles(clean[i]) for i in np.flatnonzero(train)) if q is not None]
    ref = np.mean(qs, axis=0)
    angles = np.array([angle(clean[i][..., 0] > 0) for i in range(0, len(clean), 7)])
    target = float(np.median(angles))
    print(f"clean angles: median {target:.2f}, IQR {np.percentile(angles, 25):.2f}..{np.percentile(angles, 75):.2f},"
          f" 5-95% {np.percentile(angles, 5):.2f}..{np.percentile(angles, 95):.2f}", flush=True)

    steps = canonical_steps(ref, target)
    for name in which or ["none", "match", "align", "blur1.5", "align+match", "align+match+blur1.5"]:
        t0 = time.time()
        f = canonical(name, steps)

        def feats(stack: np.ndarray, f=f) -> np.ndarray:
            return model_features(model, np.stack([f(im) for im in stack]))

        x = [feats(clean)[train]] + [feats(c)[train] for c in copies]
        y = np.tile(ds.labels[train], len(x))
        head = LinearHead(l2=l2).fit(np.concatenate(x), y)
        fs = {k: feats(v) for k, v in sample.items()}
        change_report(f"{name} ({time.time() - t0:.0f} s)", fs, head.weight, head.bias, h.sample.labels)


if __name__ == "__main__":
    main(sys.argv[1:])
