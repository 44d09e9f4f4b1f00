"""Models for the explainer tests: the three architectures with random weights and BatchNorm statistics that
are not the identity (so folding them is really exercised), plus a small model that uses every supported
operation (grouped and depthwise convolution, average pooling, ReLU6, an unfolded BatchNorm, a residual
sum)."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from diseaseid.models import create_model

ARCHS = ("convnet1", "convnet2", "lite0")
# Lite0 accepts any input size; the students' dense head needs 224 x 224.
INPUT_SIZE = {"convnet1": 224, "convnet2": 224, "lite0": 96}


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_((torch.rand(n, generator=g) - 0.5) * 0.4)
    return model


def build(arch: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    kwargs = {"pretrained": False} if arch == "lite0" else {}
    return randomize_batchnorm(create_model(arch, **kwargs), seed).eval()


def batch(arch: str, n: int = 2, seed: int = 1, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    size = INPUT_SIZE.get(arch, 32)
    return torch.randn(n, 3, size, size, generator=g).to(dtype)


class Residual(nn.Module):
    def __init__(self, chs: int):
        super().__init__()
        self.conv = nn.Conv2d(chs, chs, 3, padding=1, groups=chs, bias=False)  # depthwise
        self.bn = nn.BatchNorm2d(chs)

    def forward(self, x):
        return x + self.bn(self.conv(x))


class Toy(nn.Module):
    """Every supported operation in a few layers (32 x 32 inputs)."""

    gradcam_layer = "block"

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.act = nn.ReLU6()
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.bn = nn.BatchNorm2d(8)
        self.block = Residual(8)
        self.pool = nn.AvgPool2d(2)
        self.norm = nn.BatchNorm2d(8)  # follows pooling: stays an affine layer, not folded
        self.drop = nn.Dropout(0.5)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * 8 * 8, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        x = self.act(self.stem(x))
        x = torch.relu(self.bn(self.grouped(x)))
        x = self.block(x)
        x = self.norm(self.pool(x))
        x = self.flatten(self.drop(x))
        return self.head(torch.relu(self.fc(x)))


def toy(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = Toy()
    with torch.no_grad():
        model.stem.weight.mul_(3.0)  # drive some activations past ReLU6's saturation at 6
    return randomize_batchnorm(model, seed).eval()


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    """These tests are many small operations: one thread is as fast on an idle machine and far faster on a
    busy one (two threads then wait on each other at every operation)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
