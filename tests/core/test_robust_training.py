"""The training options for features that acquisition does not move: resolution augmentation, the
feature-consistency loss, the convnets' head gate as a training option, and checkpoints written before them."""
import json

import pytest
import torch
import torch.nn.functional as F

from diseaseid.cli import main
from diseaseid.data.augment import AugmentConfig, augment, resolution
from diseaseid.train.config import TrainConfig
from diseaseid.train.trainer import _config_key, consistency_loss


def _head_image(n: int = 6, size: int = 64) -> torch.Tensor:
    """A bright disk with fine stripes (detail a coarser matrix loses) on a zero background."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size / 3) ** 2
    stripes = 0.5 + 0.4 * ((xx // 2) % 2)
    x = (disk * stripes).float().expand(n, 3, size, size).clone()
    return x


def test_resolution_blurs_detail_and_keeps_the_background_zero():
    x = _head_image()
    gen = torch.Generator().manual_seed(0)
    out = resolution(x, AugmentConfig(blur=0.5, blur_p=1.0), gen)
    head = x.amax(1, keepdim=True) > 0
    assert torch.equal(out * ~head, torch.zeros_like(out))  # background exactly zero
    assert 0 <= out.min() and out.max() <= 1
    # Every image was down-sampled (levels 1/8 .. 8/8 of the 0.5 range): the 2-px stripes lose contrast.
    inside = head.expand_as(x)
    contrast = lambda t: (t[..., 1:] - t[..., :-1]).abs()[inside[..., 1:]].mean()  # noqa: E731
    assert contrast(out) < 0.8 * contrast(x)
    # Image i: down to round(64 * (1 - 0.5 * (k + 1) / 8)) pixels (k its drawn level of 8) and back.
    draws = torch.rand(6, 2, generator=torch.Generator().manual_seed(0))
    levels = torch.floor(draws[:, 0] * 8).clamp(max=7)
    assert len(set(levels.tolist())) > 1
    for i, k in enumerate(levels.tolist()):
        side = round(64 * (1 - 0.5 * (k + 1) / 8))
        small = F.interpolate(x[i:i + 1], size=(side, side), mode="bilinear", antialias=True, align_corners=False)
        want = F.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False) * head[i:i + 1]
        assert torch.allclose(out[i:i + 1], want.clamp(0, 1), atol=1e-6), (i, k)
    # blur_p 0: nothing changes; blur 0 (the default): augment draws no resolution change at all.
    assert torch.equal(resolution(x, AugmentConfig(blur=0.5, blur_p=0.0), gen), x)
    assert torch.equal(augment(x, generator=torch.Generator().manual_seed(1)),
                       augment(x, AugmentConfig(blur=0.0), generator=torch.Generator().manual_seed(1)))


def test_consistency_loss_values():
    clean = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert consistency_loss(clean.clone(), clean).item() == 0.0
    assert consistency_loss(torch.zeros_like(clean), clean).item() == pytest.approx(1.0)
    # mean((f - c)^2) / mean(c^2) = mean([1, 0, 0, 4]) / mean([1, 4, 9, 16]) = 1.25 / 7.5
    assert consistency_loss(clean + torch.tensor([[1.0, 0.0], [0.0, -2.0]]), clean).item() == pytest.approx(1 / 6)
    f = clean.clone().requires_grad_()
    c = clean.clone().requires_grad_()
    consistency_loss(f * 2, c).backward()
    assert c.grad is None and f.grad is not None  # the clean view only anchors


def test_options_left_out_of_old_checkpoints_keys():
    key = _config_key(TrainConfig())
    for k in ("aug_blur", "consistency", "mask_background", "input_pool"):
        assert k not in key  # at their defaults: a checkpoint written before them still resumes
    assert _config_key(TrainConfig(input_pool=2))["input_pool"] == 2
    assert _config_key(TrainConfig(consistency=0.5))["consistency"] == 0.5
    assert TrainConfig(model="convnet1", mask_background=True).model_args() == {"mask_background": True}


def test_a_run_with_the_options_trains_a_gated_convnet(tmp_path, fixtures_dir):
    out = tmp_path / "run"
    assert main(["train", "--task", "tumor", "--model", "convnet2", "--widths", "4,6,8",
                 "--data", str(fixtures_dir / "tumor"), "--split", str(tmp_path / "split.json"),
                 "--epochs", "1", "--batch-size", "4", "--out", str(out), "--quiet",
                 "--mask-background", "--aug-blur", "0.4", "--consistency", "1.0"]) == 0
    card = json.loads((out / "student.json").read_text())
    assert card["arch_args"]["mask_background"] is True
    assert card["training"]["aug_blur"] == 0.4 and card["training"]["consistency"] == 1.0
    assert card["history"][0]["train_loss"] > 0
    # the card's augmentation is the run's, not the defaults: resolution on, default noise, no scan noise
    aug = card["preprocess"]["augmentation (training)"]
    assert aug["blur"] == 0.4 and aug["noise"] == 0.04 and aug["noise_p"] == 0.7 and "scan_noise" not in aug


def test_the_card_records_the_runs_augmentation():
    aug = TrainConfig(aug_noise=0.06, aug_noise_p=0.5, aug_scan_noise=16, aug_scan_copies=2,
                      aug_scan_p=0.6).augmentation_card()
    assert (aug["noise"], aug["noise_p"], aug["blur"], aug["rotate_deg"]) == (0.06, 0.5, 0.0, 10.0)
    assert aug["scan_noise"]["sigma_of_255"] == 16 and aug["scan_noise"]["copies"] == 2
    assert aug["scan_noise"]["share_of_batch"] == 0.6
    assert TrainConfig(augment=False, aug_scan_noise=16).augmentation_card() == {}
