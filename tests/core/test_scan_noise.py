"""Scanner noise added to the raw slice before the head crop (diseaseid.data.scan_noise) and its use in training:
each copy's noise level, copies decoded as served, the disk cache, a batch's share of copies, and a resumed run."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diseaseid.cli import main
from diseaseid.data import scan_noise
from diseaseid.data.dataset import ImageFolder
from diseaseid.data.head import head_crop
from diseaseid.robustness.perturbations import rician
from diseaseid.tasks import get_task
from diseaseid.train.trainer import DeviceImages


def test_each_copy_draws_its_own_band_of_sigma():
    sigmas = np.array([[scan_noise.copy_sigma(i, k, 4, 16.0, seed=0) for k in range(4)] for i in range(50)])
    for k in range(4):  # copy k: sigma in [4k, 4k + 4)
        assert (sigmas[:, k] >= 4 * k).all() and (sigmas[:, k] < 4 * k + 4).all()
        assert sigmas[:, k].std() > 0.5  # drawn, not one value per band
    assert scan_noise.copy_sigma(7, 2, 4, 16.0, seed=0) == sigmas[7, 2]  # the same every time
    assert scan_noise.copy_sigma(7, 2, 4, 16.0, seed=1) != sigmas[7, 2]


def test_a_copy_is_the_served_decode_of_the_noisy_raw_slice(fixtures_dir):
    ds = ImageFolder.scan(fixtures_dir / "tumor", get_task("tumor"))
    raw = scan_noise.raw_grey(ds.root / ds.files[0])
    # with no noise to speak of, a copy is the training image itself (the serving path's decode of the file)
    faint = scan_noise.noisy_copy(raw, 0, 0, 1, 1e-9, seed=0)
    assert np.array_equal(faint, ds.images[0])
    copy = scan_noise.noisy_copy(raw, 3, 1, 2, 16.0, seed=5)
    sigma = scan_noise.copy_sigma(3, 1, 2, 16.0, seed=5)
    assert 8 <= sigma < 16
    want = head_crop(rician(sigma)(raw, np.random.default_rng([5, 3, 1, 1])))
    assert np.array_equal(copy, want)
    # the noise is inside the head only (the crop zeroes the background), and it moved the pixels there
    head = ds.images[0][..., 0] > 0
    assert (copy[~head & (copy[..., 0] > 0)].size / copy.size) < 0.02  # the mask moves by a pixel at most
    diff = np.abs(copy[..., 0].astype(int) - ds.images[0][..., 0].astype(int))[head]
    assert diff.mean() > 3


def test_copies_are_cached_and_stacked_by_copy(fixtures_dir, monkeypatch):
    ds = ImageFolder.scan(fixtures_dir / "tumor", get_task("tumor"))
    files = ds.files[:3]
    out = scan_noise.scan_noise_copies(ds.root, files, "test-key", 12.0, 2, seed=0)
    assert out.shape == (2, 3, 224, 224, 3) and out.dtype == np.uint8
    for i in range(3):
        raw = scan_noise.raw_grey(ds.root / files[i])
        for k in range(2):
            assert np.array_equal(out[k, i], scan_noise.noisy_copy(raw, i, k, 2, 12.0, seed=0))
    # a second call reads the cache: nothing is computed again
    monkeypatch.setattr(scan_noise, "noisy_copy", lambda *a, **k: pytest.fail("recomputed a cached copy"))
    assert np.array_equal(scan_noise.scan_noise_copies(ds.root, files, "test-key", 12.0, 2, seed=0), out)
    with pytest.raises(ValueError, match="copies >= 1"):
        scan_noise.scan_noise_copies(ds.root, files, "test-key", 12.0, 0)


def _marked(n: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Images 0 and copies k = 1, 2 filled with 10 * k + 1, plus each image's index in one pixel."""
    images = np.zeros((n, 4, 4, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(n)
    copies = np.stack([images.copy(), images.copy()])
    copies[0, :, 1:, :] = 11
    copies[1, :, 1:, :] = 21
    return images, copies


def test_a_batch_takes_its_share_from_random_copies_of_the_same_images():
    images, copies = _marked()
    dev = DeviceImages(images, torch.device("cpu"), False, copies=copies, copies_p=0.5)
    torch.manual_seed(0)
    seen = []
    for _ in range(40):
        index = torch.randperm(8)[:6]
        picked = dev._pick(index)
        assert torch.equal(picked[:, 0, 0, 0], index.to(torch.uint8))  # the right image, whichever copy
        seen.append(picked[:, 1, 1, 0])
    seen = torch.cat(seen)
    share = {v: (seen == v).float().mean().item() for v in (0, 11, 21)}
    assert abs(share[0] - 0.5) < 0.1 and abs(share[11] - 0.25) < 0.08 and abs(share[21] - 0.25) < 0.08
    # un-augmented batches (validation, the teacher's logits) never see a copy
    plain = dev.batch(torch.arange(8), train_augment=False)
    want = DeviceImages(images, torch.device("cpu"), False).batch(torch.arange(8))
    assert torch.equal(plain, want)
    # p = 1: every image from a copy; p = 0: none
    assert (DeviceImages(images, torch.device("cpu"), False, copies=copies, copies_p=1.0)
            ._pick(torch.arange(8))[:, 1, 1, 0] > 0).all()
    assert torch.equal(DeviceImages(images, torch.device("cpu"), False, copies=copies, copies_p=0.0)
                       ._pick(torch.arange(8)), torch.from_numpy(images))
    with pytest.raises(ValueError, match="do not match"):
        DeviceImages(images, torch.device("cpu"), False, copies=copies[:, :3])


def _train(tmp_path, fixtures_dir, out, *extra):
    return main(["train", "--task", "tumor", "--model", "convnet2", "--widths", "4,6,8",
                 "--data", str(fixtures_dir / "tumor"), "--split", str(tmp_path / "split.json"),
                 "--epochs", "2", "--batch-size", "4", "--lr", "3e-3", "--warmup-epochs", "0.5",
                 "--patience", "9", "--aug-scan-noise", "12", "--aug-scan-p", "0.7", "--out", str(out), "--quiet",
                 *extra])


def test_a_run_with_scan_noise_resumes_to_the_same_weights_and_records_it(tmp_path, fixtures_dir):
    assert _train(tmp_path, fixtures_dir, tmp_path / "straight") == 0
    assert _train(tmp_path, fixtures_dir, tmp_path / "resumed", "--stop-after", "1") == 0
    assert _train(tmp_path, fixtures_dir, tmp_path / "resumed", "--resume") == 0
    a = load_file(str(tmp_path / "straight" / "student.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "student.safetensors"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    card = json.loads((tmp_path / "straight" / "student.json").read_text())
    config = card["training"]
    assert (config["aug_scan_noise"], config["aug_scan_copies"], config["aug_scan_p"]) == (12.0, 2, 0.7)
    # the same run without the copies trains to other weights: the copies were used
    assert _train(tmp_path, fixtures_dir, tmp_path / "plain", "--aug-scan-p", "0") == 0
    c = load_file(str(tmp_path / "plain" / "student.safetensors"))
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
