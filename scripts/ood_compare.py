"""Which out-of-distribution detector is strongest: image checks alone, or with the student's or the teacher's
energy score (each at the threshold in its model card), or both models' -- measured on non-MRI images that no
threshold was chosen on (generated here, seeded) and on MRI slices (the committed fixtures and, when the data
sets are present, the validation split the thresholds were set on and a sample of training slices).

    .venv/bin/python scripts/ood_compare.py [--tasks tumor dementia] [--val-sample N] [--train-sample 300]
                                            [--seed 1] [--list]

Goal (issue 14): >= 95% of non-MRI images flagged, <= 5% of MRI slices.
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from diseaseid.data.dataset import ImageFolder  # noqa: E402
from diseaseid.data.preprocess import IMAGE_SIZE, to_uint8_rgb  # noqa: E402
from diseaseid.paths import fixtures_dir, split_path, task_data_dir  # noqa: E402
from diseaseid.serving import Predictor  # noqa: E402
from diseaseid.serving.ood import image_checks  # noqa: E402
from diseaseid.tasks import get_task  # noqa: E402

S = IMAGE_SIZE
# scikit-image pictures that need no download; the first group is what the shipped thresholds were checked on
# (diseaseid/train/ood_eval.py NATURAL) -- here only in presentations those checks never had (gray, on black).
SEEN = ("astronaut", "camera", "cat", "chelsea", "coffee", "coins", "grass", "gravel", "horse", "moon", "page",
        "rocket", "text", "brick", "motorcycle_left", "hubble_deep_field", "immunohistochemistry")
UNSEEN = ("cell", "clock", "checkerboard", "microaneurysms", "retina", "stereo_motorcycle", "binary_blobs")
WORDS = ("Patient", "Report", "MRI", "brain", "scan", "result", "normal", "axial", "T1", "findings", "date",
         "lorem", "ipsum", "dolor", "sit", "amet", "cat", "hello", "world", "12345", "invoice", "total")


def _gray(img: np.ndarray) -> np.ndarray:
    """Any scikit-image picture -> H x W uint8 gray."""
    img = np.asarray(img)
    if isinstance(img, tuple):
        img = img[0]
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    rgb = to_uint8_rgb(img, size=max(img.shape[:2]))  # any dtype -> uint8, square
    return np.asarray(Image.fromarray(rgb).convert("L"))


def _on_black(gray: np.ndarray, scale: float, ellipse: bool = False) -> np.ndarray:
    """``gray`` shrunk to ``scale`` of the frame and centred on black (optionally cut to an ellipse)."""
    side = int(S * scale)
    inner = Image.fromarray(gray).resize((side, side), Image.BILINEAR)
    canvas = Image.new("L", (S, S), 0)
    mask = None
    if ellipse:
        mask = Image.new("L", (side, side), 0)
        ImageDraw.Draw(mask).ellipse((0, side * 0.08, side - 1, side * 0.92), fill=255)
    canvas.paste(inner, ((S - side) // 2, (S - side) // 2), mask)
    return np.asarray(canvas)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"), size)
    except Exception:  # no matplotlib: PIL's built-in font
        return ImageFont.load_default()


def _text(rng: np.random.Generator, size: int, fg: int, bg: int) -> np.ndarray:
    img = Image.new("L", (S, S), bg)
    draw = ImageDraw.Draw(img)
    words = " ".join(rng.choice(WORDS, 60))
    y = 4
    for line in textwrap.wrap(words, width=max(8, int(S / (size * 0.55)))):
        draw.text((4, y), line, fill=fg, font=_font(size))
        y += int(size * 1.3)
        if y > S:
            break
    return np.asarray(img)


def _smooth_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    g = Image.fromarray(rng.integers(0, 256, (S, S), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(sigma))
    a = np.asarray(g).astype(np.float32)
    return np.clip((a - a.mean()) / (a.std() + 1e-6) * 50 + 128, 0, 255).astype(np.uint8)


def fresh_non_mri(seed: int = 1) -> dict[str, np.ndarray]:
    """Non-MRI images the shipped thresholds never saw, as 224 x 224 x 3 uint8 (grayscale in RGB)."""
    import skimage.data

    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    pictures = {}
    for name in SEEN + UNSEEN:
        try:
            pictures[name] = _gray(getattr(skimage.data, name)())
        except Exception:  # a picture that needs an optional download
            continue
    for name, gray in pictures.items():
        if name in UNSEEN:
            out[f"photo_gray:{name}"] = np.asarray(Image.fromarray(gray).resize((S, S), Image.BILINEAR))
        out[f"photo_on_black:{name}"] = _on_black(gray, rng.uniform(0.55, 0.8))
        out[f"photo_ellipse_on_black:{name}"] = _on_black(gray, rng.uniform(0.7, 0.9), ellipse=True)
    faces = skimage.data.lfw_subset()
    for i in range(4):
        out[f"face_on_black:{i}"] = _on_black(_gray(faces[i * 7]), 0.75)
    for size in (10, 14, 18, 24, 32, 44):
        out[f"text_white_on_black:{size}"] = _text(rng, size, 255, 0)
        out[f"text_gray_on_dark:{size}"] = _text(rng, size, int(rng.integers(150, 230)), int(rng.integers(0, 30)))
    for sigma in (1.5, 3, 6, 12):
        noise = _smooth_noise(rng, sigma)
        out[f"noise_smooth:{sigma}"] = noise
        out[f"noise_smooth_on_black:{sigma}"] = _on_black(noise, 0.75, ellipse=True)
    for i in range(3):
        sp = np.zeros((S, S), np.uint8)
        sp[rng.random((S, S)) < 0.05 * (i + 1)] = 255
        out[f"noise_salt_on_black:{i}"] = sp
        gauss = np.clip(rng.normal(128, 40 + 20 * i, (S, S)), 0, 255).astype(np.uint8)
        out[f"noise_gaussian:{i}"] = gauss
        out[f"noise_gaussian_on_black:{i}"] = _on_black(gauss, 0.7, ellipse=True)
    for i in range(4):  # bright random shapes on black
        img = Image.new("L", (S, S), 0)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(2, 9))):
            x0, y0 = rng.integers(0, S - 40, 2)
            x1, y1 = x0 + rng.integers(20, 120), y0 + rng.integers(20, 120)
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1),
                                                                     fill=int(rng.integers(80, 256)))
        out[f"shapes_on_black:{i}"] = np.asarray(img)
    ramp = np.tile(np.linspace(0, 255, S, dtype=np.float32), (S, 1))
    out["gradient:horizontal"] = ramp.astype(np.uint8)
    out["gradient:radial"] = np.clip(255 - np.hypot(*np.meshgrid(np.arange(S) - S / 2, np.arange(S) - S / 2))
                                     * 2.2, 0, 255).astype(np.uint8)
    return {k: np.repeat(v[..., None], 3, axis=2) if v.ndim == 2 else v for k, v in out.items()}


def mri_sets(task: str, val_sample: int | None, train_sample: int, seed: int) -> dict[str, np.ndarray]:
    sets = {"fixtures": ImageFolder.scan(fixtures_dir() / task, get_task(task)).images}
    try:  # the committed split's file lists; only the sampled files are decoded
        split = json.loads(split_path(task).read_text())
        data = ImageFolder.scan(task_data_dir(get_task(task)), get_task(task))
    except (OSError, ValueError) as exc:  # data sets absent
        print(f"  ({task}: no data set, fixtures only: {type(exc).__name__}: {exc})")
        return sets
    rng = np.random.default_rng(seed)
    for name, files, n in (("val", split["val"], val_sample), ("train_sample", split["train"], train_sample)):
        if n == 0:
            continue
        if n is not None and n < len(files):
            files = sorted(rng.choice(files, n, replace=False).tolist())
        sets[name] = data.select(files).images
    return sets


def energies(predictor: Predictor, images: np.ndarray, batch: int = 32) -> np.ndarray:
    from diseaseid.serving.ood import energy_score

    return np.concatenate([energy_score(predictor.logits(images[s:s + batch])).numpy()
                           for s in range(0, len(images), batch)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["tumor", "dementia"])
    ap.add_argument("--val-sample", type=int, default=None, help="a seeded sample of the validation slices "
                    "(default: all)")
    ap.add_argument("--train-sample", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--list", action="store_true", help="name the non-MRI images each detector misses")
    args = ap.parse_args()
    others = fresh_non_mri(args.seed)
    names = list(others)
    other_images = np.stack(list(others.values()))
    other_checks = np.array([bool(image_checks(x)) for x in other_images])
    print(f"{len(names)} fresh non-MRI images; image checks alone flag {other_checks.mean():.1%}")
    for task in args.tasks:
        other = next(t for t in ("tumor", "dementia") if t != task)
        models = {"student": Predictor.from_shipped(task, "student"),
                  "teacher": Predictor.from_shipped(task, "teacher"),
                  f"{other}-teacher": Predictor.from_shipped(other, "teacher")}
        thr = {role: m.ood_threshold for role, m in models.items()}
        print(f"\n== {task}: thresholds " + ", ".join(f"{r} {m.version} {thr[r]:.3f}" for r, m in models.items()),
              flush=True)
        sets = {"non-MRI": other_images, **mri_sets(task, args.val_sample, args.train_sample, args.seed)}
        rows, quant = {}, {}
        for set_name, images in sets.items():
            checks = other_checks if set_name == "non-MRI" else np.array([bool(image_checks(x)) for x in images])
            e = {role: energies(m, images) for role, m in models.items()}
            over = {role: e[role] > thr[role] for role in models}
            quant[set_name] = {role: np.percentile(v, [0, 5, 50, 95, 100]) for role, v in e.items()}
            rows[set_name] = {
                "checks": checks,
                "checks+student": checks | over["student"],
                "checks+teacher": checks | over["teacher"],
                "checks+either": checks | over["student"] | over["teacher"],
                f"checks+{other}-t": checks | over[f"{other}-teacher"],
                "checks+t+other-t": checks | over["teacher"] | over[f"{other}-teacher"],
            }
            if set_name == "non-MRI":
                for k in ("photo_on_black:cat", "text_white_on_black:18"):
                    i = names.index(k)
                    print(f"  {k}: " + ", ".join(f"{r} energy {e[r][i]:.2f}" for r in models), flush=True)
        header = f"  {'detector':<18}" + "".join(f"{s + f' (n={len(sets[s])})':>24}" for s in sets)
        print(header)
        for det in rows["non-MRI"]:
            print(f"  {det:<18}" + "".join(f"{rows[s][det].mean():>24.1%}" for s in sets))
        print("  energy percentiles 0/5/50/95/100:")
        for set_name, q in quant.items():
            for role, v in q.items():
                print(f"    {set_name:<14} {role:<16} " + " ".join(f"{x:9.2f}" for x in v))
        if args.list:
            for det, flagged in rows["non-MRI"].items():
                missed = [n for n, f in zip(names, flagged) if not f]
                print(f"  {det} misses {len(missed)}: {', '.join(missed)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
