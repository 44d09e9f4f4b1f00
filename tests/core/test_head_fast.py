"""The fast head crop (diseaseid.data.head) against a literal transcription of the original, and its golden digest.

The shipped models were trained on the original implementation's outputs and the caches of pre-processed images
are keyed by :data:`PREPROCESS_REVISION`, not by the module's source, so every output must stay the same bit for
bit: pixels and boxes, on the committed fixture slices, on synthetic hard cases, and on 200 real slices per task
when ``../shared/data`` is present.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from diseaseid.data import head
from diseaseid.data.preprocess import as_uint8_rgb
from diseaseid.paths import task_data_dir
from diseaseid.tasks import TASKS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


# --- the reference: the implementation of head.py at revision 16f40065, transcribed, slow ---------------------

def _reference_gray(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3:
        return arr[..., :3].astype(np.float32).mean(axis=2)
    return arr.astype(np.float32)


def _reference_mask(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    scale = min(1.0, head.MASK_SIDE / max(h, w))
    small = gray
    if scale < 1.0:
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        small = np.asarray(Image.fromarray(gray.astype(np.float32), "F").resize((sw, sh), Image.BILINEAR))
    smooth = ndimage.gaussian_filter(small.astype(np.float32), head.SMOOTH_SIGMA, mode="nearest")
    bright = float(np.percentile(smooth, 99.5))
    border = np.concatenate([smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1]])
    background = min(float(np.median(border)), float(np.percentile(smooth, 10)))
    if not np.isfinite(bright) or bright <= background:
        return np.zeros((h, w), bool)
    mask = smooth > background + head.THRESHOLD * (bright - background)
    mask = ndimage.binary_opening(mask, structure=head._DISK, border_value=0)
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros((h, w), bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    mask = ndimage.binary_closing(labels == int(sizes.argmax()), structure=head._DISK, border_value=0)
    mask = ndimage.binary_fill_holes(mask)
    if mask.shape != (h, w):
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255, "L").resize((w, h), Image.BILINEAR)) >= 128
    return mask


def _reference_crop(image: np.ndarray, size: int = 224) -> tuple[np.ndarray, head.HeadBox]:
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3:
        arr = arr[..., :3]
    arr = arr.astype(np.float32)
    gray = _reference_gray(arr)
    mask = _reference_mask(gray)
    box = head.head_box(mask)
    if box.found:
        level = float(np.percentile(gray[mask], 99))
        factor = head.TARGET_LEVEL / level if level > 0 else 1.0
        arr = arr * (mask[..., None] if arr.ndim == 3 else mask) * factor
    crop = head._crop_square(np.clip(arr, 0, 255), box)
    rgb = crop if crop.ndim == 3 else np.repeat(crop[..., None], 3, axis=2)
    img = Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8), box


# --- inputs: synthetic hard cases (integer geometry and uniform noise only: the same arrays on every machine) -----

def _ellipse(h: int, w: int, cy: int, cx: int, ry: int, rx: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) * rx) ** 2 + ((xx - cx) * ry) ** 2 <= (ry * rx) ** 2


def _phantom(h: int = 200, w: int = 170, level: int = 150) -> np.ndarray:
    img = np.zeros((h, w), np.uint8)
    img[_ellipse(h, w, h // 2, w // 2, 42 * h // 100, 40 * w // 100)] = level
    img[_ellipse(h, w, h // 2, w // 2, 12, 8)] = 10  # a dark ventricle inside
    img[_ellipse(h, w, h // 2 - 20, w // 2 - 22 * w // 100, 10, 10)] = 240  # a bright lesion on the left
    return img


def synthetic_cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(27)
    ph = _phantom()
    h, w = ph.shape
    cases = {"phantom": ph}
    for amp in (20, 60, 120):  # noise over the whole image, up to a level near the head's
        cases[f"noise{amp}"] = np.clip(ph.astype(np.int32) + rng.integers(0, amp, ph.shape), 0, 255).astype(np.uint8)
    framed = ph.copy()
    framed[0, :] = framed[-1, :] = framed[:, 0] = framed[:, -1] = 255  # a frame on the image's edge
    framed[h // 2, :] = 200  # a line across the head, touching it on both sides
    framed[:, 5] = 255  # a vertical line near the edge
    for k in range(6):  # text: short strokes touching the head's top
        framed[8 + 3 * (k % 2):20, 40 + 6 * k:42 + 6 * k] = 255
    cases["frame_text"] = framed
    rings = np.zeros((180, 180), np.uint8)  # a ring with holes: a big one, a small one, a bay open to the outside
    rings[_ellipse(180, 180, 90, 90, 80, 70)] = 180
    rings[_ellipse(180, 180, 90, 90, 40, 30)] = 0
    rings[30:36, 88:94] = 0
    rings[85:95, 150:180] = 0
    cases["holes"] = rings
    cut = np.zeros((160, 160), np.uint8)  # the head cut by the image's top and left edges
    cut[_ellipse(160, 160, 40, 30, 90, 80)] = 170
    cases["cut_by_edge"] = cut
    speckle = ph.copy()  # isolated bright specks and a thin ruler: removed by the opening
    speckle[rng.random(ph.shape) < 0.01] = 255
    speckle[h - 6:h - 4, 10:w - 10] = 255
    cases["speckle_ruler"] = speckle
    cases["empty"] = np.zeros((50, 80), np.uint8)
    cases["constant"] = np.full((64, 64), 128, np.uint8)
    cases["tiny_1x1"] = np.full((1, 1), 7, np.uint8)
    cases["tiny_3x3"] = rng.integers(0, 255, (3, 3)).astype(np.uint8)
    cases["thin_2x9"] = rng.integers(0, 255, (2, 9)).astype(np.uint8)
    cases["ramp"] = np.tile(np.arange(200, dtype=np.uint8), (120, 1))
    cases["160x200"] = _phantom(160, 200, 140)
    cases["200x160_noise"] = np.clip(_phantom(200, 160).astype(np.int32) + rng.integers(0, 50, (200, 160)),
                                     0, 255).astype(np.uint8)
    big = np.clip(_phantom(512, 512).astype(np.int32) + rng.integers(0, 30, (512, 512)), 0, 255).astype(np.uint8)
    cases["512x512"] = big  # the mask is computed at 256 x 256 and brought back
    cases["300x257"] = _phantom(300, 257)
    cases["rgb_equal"] = np.repeat(cases["noise60"][..., None], 3, axis=2)
    tint = cases["noise60"].astype(np.int32)
    cases["rgb_tinted"] = np.stack([tint, tint * 4 // 5, tint // 2 + 20], axis=2).astype(np.uint8)
    cases["rgb_one_channel_differs"] = cases["rgb_equal"].copy()
    cases["rgb_one_channel_differs"][60:63, 60:63, 2] //= 2  # blue only, inside the head
    cases["hw1"] = cases["noise20"][..., None]
    cases["rgba"] = np.concatenate([cases["rgb_tinted"], np.full((h, w, 1), 255, np.uint8)], axis=2)
    cases["uint16"] = (cases["noise60"].astype(np.uint16) * 257)
    cases["float32_unit"] = cases["noise60"].astype(np.float32) / np.float32(255)
    cases["float64_range"] = cases["noise20"].astype(np.float64) * 1.5 - 40.0  # negatives and values over 255
    cases["int16_grey"] = cases["frame_text"].astype(np.int16)
    cases["float_rgb"] = cases["rgb_tinted"].astype(np.float32)
    return cases


def fixture_paths() -> list[Path]:
    return sorted(FIXTURES.rglob("*.jpg"))


def _same(image: np.ndarray) -> None:
    out, box = head.head_crop_with_box(image)
    ref, ref_box = _reference_crop(image)
    assert box == ref_box
    assert out.dtype == ref.dtype == np.uint8 and out.shape == ref.shape == (224, 224, 3)
    assert np.array_equal(out, ref), f"{int((out != ref).sum())} pixels differ"


# --- the parts, against scipy ------------------------------------------------------------------------------------

def _random_masks():
    rng = np.random.default_rng(3)
    for shape in [(1, 1), (1, 9), (9, 1), (2, 2), (5, 5), (6, 8), (7, 7), (13, 31), (64, 48), (120, 97)]:
        for density in (0.05, 0.3, 0.6, 0.85, 0.97):
            yield rng.random(shape) < density
        yield np.ones(shape, bool)
        yield np.zeros(shape, bool)
    ring = _ellipse(60, 70, 30, 35, 25, 30) & ~_ellipse(60, 70, 30, 35, 10, 12)
    yield ring
    yield ~ring


def test_disk_is_the_three_rectangles():
    union = np.zeros((7, 7), bool)
    union[:, 3] = union[3, :] = True
    union[1:6, 1:6] = True
    assert np.array_equal(head._DISK, union)


def test_morphology_equals_scipy():
    for m in _random_masks():
        for erode, fn in ((True, ndimage.binary_erosion), (False, ndimage.binary_dilation)):
            assert np.array_equal(head._disk_pass(m, erode), fn(m, structure=head._DISK, border_value=0)), m.shape
        assert np.array_equal(head._open_disk(m), ndimage.binary_opening(m, structure=head._DISK, border_value=0))
        assert np.array_equal(head._close_disk(m), ndimage.binary_closing(m, structure=head._DISK, border_value=0))
        assert np.array_equal(head._fill_holes(m), ndimage.binary_fill_holes(m))


def test_smoothing_equals_gaussian_filter():
    rng = np.random.default_rng(5)
    for shape in [(1, 1), (3, 2), (20, 9), (17, 17), (224, 224), (208, 176)]:
        for img in (rng.random(shape, np.float32) * 255, rng.integers(0, 256, shape).astype(np.float32),
                    np.full(shape, 3.25, np.float32)):
            ref = ndimage.gaussian_filter(img, head.SMOOTH_SIGMA, mode="nearest")
            assert np.array_equal(head._smooth(img), ref), shape


def test_gray_of_bytes_equals_the_float_mean():
    # every sum of three bytes (the mean depends on the sum only: float32 adds of bytes are exact)
    s = np.arange(766)
    r = np.minimum(s, 255)
    g = np.minimum(s - r, 255)
    rgb = np.stack([r, g, s - r - g], axis=1).astype(np.uint8)[None]
    assert np.array_equal(head.grey(rgb), _reference_gray(rgb.astype(np.float32)))
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (50, 60, 3)).astype(np.uint8)
    assert np.array_equal(head.grey(rgb), _reference_gray(rgb.astype(np.float32)))


# --- whole crops ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(synthetic_cases()))
def test_synthetic_cases_equal_the_reference(name):
    image = synthetic_cases()[name]
    _same(image)
    gray = _reference_gray(np.asarray(image, np.float32)) if image.ndim == 3 else image
    assert np.array_equal(head.head_mask(gray), _reference_mask(np.asarray(gray, np.float32)))


def test_fixture_slices_equal_the_reference():
    paths = fixture_paths()
    assert len(paths) >= 40
    for path in paths:
        with Image.open(path) as im:
            _same(as_uint8_rgb(im))  # as served and trained: H x W x 3 bytes
            _same(np.asarray(im))  # as stored: grey, or RGB whose JPEG channels may differ


@pytest.mark.full_data
@pytest.mark.parametrize("task", sorted(TASKS))
def test_real_slices_equal_the_reference(task):
    root = task_data_dir(TASKS[task])
    if not root.is_dir():
        pytest.skip(f"full data set not present at {root} (../shared/data)")
    paths = sorted(root.rglob("*.jpg"))
    for i, path in enumerate(paths[:: max(1, len(paths) // 200)][:200]):
        with Image.open(path) as im:
            _same(as_uint8_rgb(im) if i % 2 == 0 else np.asarray(im))


# --- the golden digest: outputs pinned with PREPROCESS_REVISION ---------------------------------------------------

GOLDEN_REVISION = "16f40065"  # PREPROCESS_REVISION that these outputs belong to
GOLDEN_INPUTS = "8a4d02f9c964a836483f8dd424e7a7a2164e5962d5ad12eaeeae6c686e9c09e2"
GOLDEN_OUTPUTS = "62350214011f716291551605f5aee7fe627e8ddeeb77546dde708bf241dd1cb4"


def _golden_items():
    for path in fixture_paths():
        with Image.open(path) as im:
            yield path.relative_to(FIXTURES).as_posix(), as_uint8_rgb(im)
    yield from synthetic_cases().items()


def golden_digests() -> tuple[str, str]:
    inputs, outputs = hashlib.sha256(), hashlib.sha256()
    for name, image in _golden_items():
        arr = np.ascontiguousarray(image)
        inputs.update(f"{name} {arr.dtype.str} {arr.shape}".encode())
        inputs.update(arr.tobytes())
        out, box = head.head_crop_with_box(image)
        outputs.update(f"{name} {box.top} {box.left} {box.side} {box.found}".encode())
        outputs.update(np.ascontiguousarray(out).tobytes())
    return inputs.hexdigest(), outputs.hexdigest()


def test_golden_digest_of_head_crop_outputs():
    assert head.preprocess_hash() == head.PREPROCESS_REVISION
    assert head.PREPROCESS_REVISION == GOLDEN_REVISION, (
        "PREPROCESS_REVISION moved, which re-keys (throws away) every cache of pre-processed images and "
        "embeddings: do it only when head_crop's outputs change, and pin GOLDEN_REVISION and GOLDEN_OUTPUTS with it")
    inputs, outputs = golden_digests()
    assert inputs == GOLDEN_INPUTS, (
        "the golden test's inputs changed (fixture slices, their JPEG decoding by this Pillow, or the synthetic "
        f"cases), not head.py: pin GOLDEN_INPUTS = {inputs!r} and GOLDEN_OUTPUTS = {outputs!r} after "
        "test_fixture_slices_equal_the_reference and the synthetic cases pass")
    assert outputs == GOLDEN_OUTPUTS, (
        "head_crop's outputs changed. If on purpose, bump PREPROCESS_REVISION in diseaseid/data/head.py (every "
        "cache of pre-processed images and embeddings is keyed by it; stale caches would be trained on "
        "otherwise), and PREPROCESS_NAME too if the model's input means something else now (models are trained "
        f"and carded with it); then pin GOLDEN_REVISION to it, GOLDEN_OUTPUTS = {outputs!r}, and update the "
        "reference transcription in this file. If not on purpose, the edit broke bit-exactness with the inputs "
        "the shipped models were trained on.")


def _time_against_the_reference(per_task: int = 100, rounds: int = 5) -> None:
    """``python -m tests.core.test_head_fast``: ms per slice of the reference and of head_crop on real slices as
    served (H x W x 3 bytes), interleaved rounds in one process; wall and CPU time (a busy machine inflates the
    wall time, the CPU time much less), the median of the rounds."""
    import statistics
    import time

    for task in sorted(TASKS):
        paths = sorted(task_data_dir(TASKS[task]).rglob("*.jpg"))
        images = [as_uint8_rgb(Image.open(p)) for p in paths[:: max(1, len(paths) // per_task)][:per_task]]
        if not images:
            print(f"{task}: no slices at {task_data_dir(TASKS[task])}")
            continue
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(rounds):
            for name, fn in (("reference", _reference_crop), ("head_crop", head.head_crop_with_box)):
                wall, cpu = time.perf_counter(), time.process_time()
                for image in images:
                    fn(image)
                times.setdefault((name, "wall"), []).append((time.perf_counter() - wall) / len(images) * 1e3)
                times.setdefault((name, "cpu"), []).append((time.process_time() - cpu) / len(images) * 1e3)
        for clock in ("wall", "cpu"):
            ref, new = (statistics.median(times[(n, clock)]) for n in ("reference", "head_crop"))
            print(f"{task} {images[0].shape}, {len(images)} slices, {clock}: reference {ref:.2f} ms, "
                  f"head_crop {new:.2f} ms, {ref / new:.2f}x")


if __name__ == "__main__":
    _time_against_the_reference()
