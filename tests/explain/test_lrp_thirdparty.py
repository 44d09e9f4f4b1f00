"""Our LRP equals Captum's and Zennit's where they are right (they cannot see residual additions, so the
students and a model without skips): Captum's LRP is epsilon everywhere with BatchNorm as its own layer;
Zennit's composites run after Zennit's own BatchNorm-merging canonizer."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

from diseaseid.explain.lrp import (
    EPSILON_ALPHA2_BETA1,
    EPSILON_GAMMA_BOX,
    EPSILON_PLUS_FLAT,
    LRP,
    epsilon_composite,
)
from diseaseid.explain.lrp.rules import IMAGENET_HIGH, IMAGENET_LOW
from tests.explain.conftest import batch, build

captum_attr = pytest.importorskip("captum.attr")
zennit_attribution = pytest.importorskip("zennit.attribution")
from zennit.canonizers import SequentialMergeBatchNorm  # noqa: E402
from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlusFlat  # noqa: E402

STUDENTS = ("convnet1", "convnet2")


def double(arch: str) -> tuple[nn.Module, torch.Tensor]:
    """The model and a batch in float64: float32 kernels round differently on other CPUs (8.5e-4 relative on an
    Intel Xeon with AMX), more than the 1e-5 the libraries' rules differ by here."""
    return build(arch).double(), batch(arch, dtype=torch.float64)


def rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("arch", STUDENTS)
def test_epsilon_equals_captum(arch):
    model, x = double(arch)
    ours = LRP(model, epsilon_composite(1e-9), canonize=False)(x)  # Captum's default epsilon, BN unfolded
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = captum_attr.LRP(model).attribute(x.clone().requires_grad_(), target=ours.targets)
    assert rel(ours.relevance, theirs.detach()) <= 1e-4


def _zennit(model, x, targets, composite):
    def output_relevance(y):  # the explained logit, as ours starts from
        index = targets.view(-1, 1)
        return torch.zeros_like(y).scatter_(1, index, y.gather(1, index))

    with zennit_attribution.Gradient(model, composite) as attributor:
        _, relevance = attributor(x, output_relevance)
    return relevance


def _box(x):
    shape = (1, 3, 1, 1)
    low = torch.tensor(IMAGENET_LOW, dtype=x.dtype).view(shape).expand_as(x)
    return low, torch.tensor(IMAGENET_HIGH, dtype=x.dtype).view(shape).expand_as(x)


@pytest.mark.parametrize("arch", STUDENTS)
@pytest.mark.parametrize("which", ["epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1"])
def test_composites_equal_zennit_with_its_canonizer(arch, which):
    model, x = double(arch)
    ours = {"epsilon_plus_flat": EPSILON_PLUS_FLAT, "epsilon_gamma_box": EPSILON_GAMMA_BOX,
            "epsilon_alpha2_beta1": EPSILON_ALPHA2_BETA1}[which]
    result = LRP(model, ours)(x)
    canonizers = [SequentialMergeBatchNorm()]
    composite = {"epsilon_plus_flat": lambda: EpsilonPlusFlat(canonizers=canonizers),
                 "epsilon_gamma_box": lambda: EpsilonGammaBox(*_box(x), canonizers=canonizers),
                 "epsilon_alpha2_beta1": lambda: EpsilonAlpha2Beta1(canonizers=canonizers)}[which]()
    before = model(x)
    theirs = _zennit(model, x, result.targets, composite)
    assert torch.equal(model(x), before)  # Zennit put the model back
    # Zennit 0.5.1 leaves eps in the merged BatchNorm (x / sqrt(1 + eps)): a 5e-6 relative change per layer
    assert rel(result.relevance, theirs) <= 1e-4


class Grouped(nn.Module):
    """Grouped and depthwise convolutions, average pooling: the operations of Lite0 except its skips."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
            nn.Conv2d(12, 12, 3, stride=2, padding=1, groups=12), nn.BatchNorm2d(12), nn.ReLU(),
            nn.Conv2d(12, 24, 1, groups=3), nn.BatchNorm2d(24), nn.ReLU(),
            nn.AvgPool2d(2), nn.Conv2d(24, 16, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(16, 4))

    def forward(self, x):
        return self.features(x)


@pytest.mark.parametrize("which", ["epsilon_plus_flat", "epsilon_gamma_box"])
def test_grouped_depthwise_and_average_pooling_equal_zennit(which):
    from tests.explain.conftest import randomize_batchnorm

    torch.manual_seed(0)
    model = randomize_batchnorm(Grouped()).eval()
    x = torch.randn(2, 3, 32, 32)
    ours = EPSILON_PLUS_FLAT if which == "epsilon_plus_flat" else EPSILON_GAMMA_BOX
    result = LRP(model, ours)(x)
    canonizers = [SequentialMergeBatchNorm()]
    composite = (EpsilonPlusFlat(canonizers=canonizers) if which == "epsilon_plus_flat"
                 else EpsilonGammaBox(*_box(x), canonizers=canonizers))
    assert rel(result.relevance, _zennit(model, x, result.targets, composite)) <= 1e-4
