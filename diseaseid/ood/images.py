"""Seeded images that are not brain MRI slices: the one source of them for fitting, measuring and testing the OOD
detector, and for the robustness benchmark's non-MRI figure.

``non_mri("calibration")`` is what design choices may look at; ``non_mri("heldout")`` is only ever measured
(``python -m diseaseid ood-fit`` reports it, never fits on it). The sets share families of images (grayscale
photos, photos on black or cut to a head-like ellipse, text, noise, gradients, shapes, faces) but never a
source picture, a seed, a font or a noise parameter, and the held-out set adds kinds the calibration set lacks:
pink (1/f) noise, speckle, stripes and rings, charts, rotated and vignetted photos, other fonts and words.

Two single images, ``cat_on_black`` and ``text_on_black``, are the kinds first found answered as diagnoses (a
grayscale cat on black called "no tumor 94%"): the tests' quick examples of a non-MRI upload. Neither is in a set.

Every image is 224 x 224 x 3 uint8; most are grayscale (gray in all three channels), because colour is caught
by a plain image check and grayscale is where a detector earns its keep. Sources: scikit-image's bundled
pictures and LFW faces, matplotlib's sample photos and fonts; nothing is downloaded.
"""
from __future__ import annotations

import io
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

S = 224
SETS = ("calibration", "heldout")
# scikit-image pictures (all bundled with the wheel), split between the sets.
PICTURES = {
    "calibration": ("camera", "coins", "grass", "brick", "moon", "chelsea", "astronaut", "coffee", "page",
                    "horse", "immunohistochemistry", "hubble_deep_field"),
    "heldout": ("gravel", "cell", "clock", "microaneurysms", "retina", "rocket", "stereo_motorcycle", "text",
                "binary_blobs", "colorwheel", "logo", "checkerboard"),
}
MPL_PHOTOS = {"calibration": (), "heldout": ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")}
FONTS = {"calibration": ("DejaVuSans.ttf",), "heldout": ("DejaVuSerif.ttf", "DejaVuSansMono.ttf")}
WORDS = {
    "calibration": ("Patient", "Report", "MRI", "brain", "scan", "result", "normal", "axial", "T1", "findings",
                    "lorem", "ipsum", "dolor", "sit", "amet", "hello", "world", "12345", "invoice", "total"),
    "heldout": ("Name", "Date", "of", "birth", "clinic", "referral", "signed", "page", "2024", "cortex", "note",
                "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "0.75", "mg"),
}
SEEDS = {"calibration": 11, "heldout": 29}
LFW = {"calibration": range(0, 60, 6), "heldout": range(100, 200, 10)}


def gray(img) -> np.ndarray:
    """Any picture (bool, float, gray, RGB(A), a tuple of views) -> H x W uint8 gray, cropped square."""
    if isinstance(img, tuple):
        img = img[0]
    img = np.asarray(img)
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    elif img.dtype != np.uint8:
        img = img.astype(np.float64)
        img = ((img - img.min()) / (np.ptp(img) + 1e-9) * 255).astype(np.uint8)
    pil = Image.fromarray(img)
    pil = pil.convert("L") if pil.mode != "L" else pil
    w, h = pil.size
    side = min(w, h)
    return np.asarray(pil.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)))


def resize(g: np.ndarray, side: int = S) -> np.ndarray:
    return np.asarray(Image.fromarray(g).resize((side, side), Image.BILINEAR))


def on_black(g: np.ndarray, scale: float, ellipse: bool = False) -> np.ndarray:
    """``g`` shrunk to ``scale`` of the frame, centred on black; ``ellipse``: cut to a head-like oval."""
    side = int(S * scale)
    inner = Image.fromarray(resize(g, side))
    canvas = Image.new("L", (S, S), 0)
    mask = None
    if ellipse:
        mask = Image.new("L", (side, side), 0)
        ImageDraw.Draw(mask).ellipse((side * 0.06, 0, side * 0.94, side - 1), fill=255)
    canvas.paste(inner, ((S - side) // 2, (S - side) // 2), mask)
    return np.asarray(canvas)


def font(name: str, size: int) -> ImageFont.ImageFont:
    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)
    except Exception:  # no matplotlib: PIL's built-in font
        return ImageFont.load_default()


def text_image(rng: np.random.Generator, words: tuple[str, ...], font_name: str, size: int, fg: int,
               bg: int) -> np.ndarray:
    img = Image.new("L", (S, S), bg)
    draw = ImageDraw.Draw(img)
    y = 4
    for line in textwrap.wrap(" ".join(rng.choice(words, 80)), width=max(6, int(S / (size * 0.6)))):
        draw.text((4, y), line, fill=fg, font=font(font_name, size))
        y += int(size * 1.35)
        if y > S:
            break
    return np.asarray(img)


def standardize(a: np.ndarray, std: float = 50) -> np.ndarray:
    return np.clip((a - a.mean()) / (a.std() + 1e-9) * std + 128, 0, 255).astype(np.uint8)


def smooth_noise(rng: np.random.Generator, sigma: float) -> np.ndarray:
    g = Image.fromarray(rng.integers(0, 256, (S, S), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(sigma))
    return standardize(np.asarray(g).astype(np.float32))


def pink_noise(rng: np.random.Generator, exponent: float) -> np.ndarray:
    """1/f^exponent noise: cloud- and texture-like, the statistics of natural images."""
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(S), np.fft.fftfreq(S)))
    f[0, 0] = 1
    spectrum = (rng.normal(size=(S, S)) + 1j * rng.normal(size=(S, S))) / f ** exponent
    return standardize(np.real(np.fft.ifft2(spectrum)))


def shapes(rng: np.random.Generator, blur: float = 0) -> np.ndarray:
    img = Image.new("L", (S, S), 0)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 9))):
        x0, y0 = rng.integers(0, S - 40, 2)
        x1, y1 = x0 + rng.integers(20, 120), y0 + rng.integers(20, 120)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=int(rng.integers(80, 256)))
    return np.asarray(img.filter(ImageFilter.GaussianBlur(blur)) if blur else img)


def chart(rng: np.random.Generator, kind: str) -> np.ndarray:
    """A matplotlib line or bar chart, rendered to pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2.24, 2.24), dpi=100)
    x = np.arange(12)
    if kind == "line":
        ax.plot(x, np.cumsum(rng.normal(size=12)), "k-")
        ax.plot(x, np.cumsum(rng.normal(size=12)), "k--")
    else:
        ax.bar(x, rng.uniform(1, 10, 12), color="0.4")
    ax.set_title("Figure", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return gray(Image.open(buf).convert("L"))


def _skimage_pictures(names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named scikit-image pictures; those it draws at random (``binary_blobs``) from a fixed seed, so the
    sets stay the same from call to call (unseeded, ``binary_blobs`` differed every time)."""
    import inspect

    import skimage.data

    out = {}
    for name in names:
        make = getattr(skimage.data, name)
        out[name] = gray(make(rng=0) if "rng" in inspect.signature(make).parameters else make())
    return out


def _mpl_pictures(names: tuple[str, ...]) -> dict[str, np.ndarray]:
    import matplotlib

    root = Path(matplotlib.get_data_path()) / "sample_data"
    return {Path(n).stem: gray(Image.open(root / n)) for n in names if (root / n).exists()}


def _photos(which: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    pictures = {**_skimage_pictures(PICTURES[which]), **_mpl_pictures(MPL_PHOTOS[which])}
    for name, g in pictures.items():
        out[f"photo_gray:{name}"] = resize(g)
        out[f"photo_on_black:{name}"] = on_black(g, rng.uniform(0.55, 0.85))
        out[f"photo_ellipse_on_black:{name}"] = on_black(g, rng.uniform(0.7, 0.95), ellipse=True)
        out[f"photo_inverted_on_black:{name}"] = on_black(255 - g, rng.uniform(0.6, 0.85), ellipse=True)
        if which == "heldout":  # presentations the calibration set never has
            rotated = np.asarray(Image.fromarray(resize(g)).rotate(float(rng.uniform(15, 75))))
            out[f"photo_rotated:{name}"] = rotated
            yy, xx = np.mgrid[:S, :S] - S / 2
            fade = np.clip(1.2 - np.hypot(yy, xx) / (S / 2), 0, 1)
            out[f"photo_vignette:{name}"] = (resize(g) * fade).astype(np.uint8)
    import skimage.data

    faces = skimage.data.lfw_subset()
    for i in LFW[which]:
        out[f"face_on_black:{i}"] = on_black(gray(faces[i]), rng.uniform(0.6, 0.85), ellipse=bool(i % 2))
    return out


def _colour(which: str) -> dict[str, np.ndarray]:
    """A few photos left in colour: the image checks' share of the work."""
    import skimage.data

    from diseaseid.data.preprocess import to_uint8_rgb

    names = ("astronaut", "coffee") if which == "calibration" else ("rocket", "retina")
    return {f"photo_colour:{n}": to_uint8_rgb(np.asarray(getattr(skimage.data, n)())) for n in names}


def _text(which: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    sizes = (10, 14, 20, 28, 40) if which == "calibration" else (9, 12, 17, 24, 34)
    for font_name in FONTS[which]:
        for size in sizes:
            tag = f"{Path(font_name).stem}:{size}"
            out[f"text_white_on_black:{tag}"] = text_image(rng, WORDS[which], font_name, size, 255, 0)
            out[f"text_gray_on_dark:{tag}"] = text_image(rng, WORDS[which], font_name, size,
                                                         int(rng.integers(140, 230)), int(rng.integers(0, 35)))
            out[f"text_black_on_white:{tag}"] = text_image(rng, WORDS[which], font_name, size, 0, 255)
    return out


def _noise(which: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    if which == "calibration":
        for sigma in (1.5, 3, 6, 12):
            n = smooth_noise(rng, sigma)
            out[f"noise_smooth:{sigma}"] = n
            out[f"noise_smooth_ellipse_on_black:{sigma}"] = on_black(n, 0.8, ellipse=True)
        for i in range(3):
            gauss = np.clip(rng.normal(128, 40 + 20 * i, (S, S)), 0, 255).astype(np.uint8)
            out[f"noise_gaussian:{i}"] = gauss
            out[f"noise_gaussian_ellipse_on_black:{i}"] = on_black(gauss, 0.75, ellipse=True)
            out[f"noise_uniform:{i}"] = rng.integers(0, 256, (S, S), dtype=np.uint8)
            salt = np.zeros((S, S), np.uint8)
            salt[rng.random((S, S)) < 0.04 * (i + 1)] = 255
            out[f"noise_salt_on_black:{i}"] = salt
    else:
        for exponent in (0.8, 1.2, 1.6, 2.0, 2.5):
            n = pink_noise(rng, exponent)
            out[f"noise_pink:{exponent}"] = n
            out[f"noise_pink_ellipse_on_black:{exponent}"] = on_black(n, float(rng.uniform(0.7, 0.9)), ellipse=True)
        for i in range(3):
            base = smooth_noise(rng, 2 + 3 * i).astype(np.float32)
            out[f"noise_speckle:{i}"] = np.clip(base * rng.exponential(1.0, (S, S)), 0, 255).astype(np.uint8)
            poisson = rng.poisson(20 + 40 * i, (S, S)).astype(np.float32)
            out[f"noise_poisson_ellipse_on_black:{i}"] = on_black(standardize(poisson), 0.8, ellipse=True)
    return out


def _synthetic(which: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    yy, xx = np.mgrid[:S, :S].astype(np.float32)
    r = np.hypot(yy - S / 2, xx - S / 2)
    if which == "calibration":
        out["gradient:horizontal"] = np.tile(np.linspace(0, 255, S), (S, 1)).astype(np.uint8)
        out["gradient:vertical_dark"] = np.tile(np.linspace(0, 120, S)[:, None], (1, S)).astype(np.uint8)
        out["gradient:radial"] = np.clip(255 - r * 2.2, 0, 255).astype(np.uint8)
        out["gradient:radial_ring"] = np.clip(255 - np.abs(r - 70) * 4, 0, 255).astype(np.uint8)
        for i in range(4):
            out[f"shapes_on_black:{i}"] = shapes(rng)
    else:
        out["gradient:diagonal"] = ((xx + yy) / (2 * S) * 255).astype(np.uint8)
        for period in (8, 24):
            out[f"stripes:{period}"] = (127.5 + 127.5 * np.sin(2 * np.pi * xx / period)).astype(np.uint8)
            out[f"rings_on_black:{period}"] = ((127.5 + 127.5 * np.cos(2 * np.pi * r / period)) * (r < 95)).astype(
                np.uint8)
        for i in range(3):
            out[f"shapes_blurred_on_black:{i}"] = shapes(rng, blur=float(rng.uniform(2, 6)))
        for kind in ("line", "bar"):
            out[f"chart:{kind}"] = chart(rng, kind)
    return out


def non_mri(which: str = "calibration") -> dict[str, np.ndarray]:
    """The named set of non-MRI images (``SETS``), name -> 224 x 224 x 3 uint8; same images on every call."""
    if which not in SETS:
        raise KeyError(f"unknown set {which!r}; choose one of {', '.join(SETS)}")
    rng = np.random.default_rng(SEEDS[which])
    makers: tuple[Callable, ...] = (_photos, _text, _noise, _synthetic)
    out: dict[str, np.ndarray] = {}
    for make in makers:
        out.update(make(which, rng))
    out = {k: resize(v) if v.shape[:2] != (S, S) else v for k, v in out.items()}
    out = {k: rgb(v) for k, v in out.items()}
    out.update(_colour(which))
    return out


def family(name: str) -> str:
    """``photo_on_black:camera`` -> ``photo_on_black``."""
    return name.split(":", 1)[0]


def rgb(g: np.ndarray) -> np.ndarray:
    """H x W gray -> H x W x 3, gray in all three channels (as a grayscale upload is decoded)."""
    return np.repeat(g[..., None], 3, axis=2)


def cat_on_black() -> np.ndarray:
    """scikit-image's cat photo (Chelsea), grayscale, squeezed to 150 x 150 and centred on black."""
    import skimage.data

    return rgb(on_black(np.asarray(Image.fromarray(skimage.data.chelsea()).convert("L")), 150 / S))


def text_on_black() -> np.ndarray:
    """Twelve white lines of text on black, in PIL's built-in font."""
    img = Image.new("L", (S, S), 0)
    draw = ImageDraw.Draw(img)
    for line in range(12):
        draw.text((6, 6 + 18 * line), f"Scan notes {line}: nothing to see here {line * 7}", fill=255)
    return rgb(np.asarray(img))
