"""Compact students: stacks of [3x3 conv (no padding) -> BatchNorm -> ReLU -> 2x2 max-pool], then a linear head.

ConvNet1 (4 blocks, 16/36/45/54 channels) and ConvNet2 (3 blocks, 22/34/48) are the widths an earlier
hyper-parameter search found; both take their widths as arguments so the search can tune them.

The head reads the last feature map flattened, one weight per position. Outside the head (the background the
head crop sets to zero) those positions still carry a constant activation, which the linear head turns into
evidence that depends on where the head is not, and LRP rightly puts relevance there. With
``mask_background`` the feature positions whose cell holds no head pixel are set to zero, so the answer (and
its explanation) comes from the head only.

With ``input_pool`` k > 1 the blocks read the input averaged over k x k pixels (an ``AvgPool2d`` first): the
network sees no detail finer than k pixels, so a slice acquired at a coarser matrix or with a wider field of
view (its head resampled to fewer pixels, then back) gives nearly the same input. The gate still reads the
full-resolution input. Tried for the dementia student (2026-12-06, ``dev.dementia_canonical_student``), it did
not steady its answers under padding or matrix 160 and lowered its clean accuracy; no shipped model uses it.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from diseaseid.data.preprocess import IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD
from diseaseid.models._registry import register_model


def feature_sizes(num_blocks: int, image_size: int = IMAGE_SIZE) -> list[int]:
    """Spatial size after each block: conv3x3 without padding (-2), then max-pool 2x2 (floor /2)."""
    sizes, s = [], image_size
    for _ in range(num_blocks):
        s = (s - 2) // 2
        sizes.append(s)
    return sizes


def head_cells(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """N x 1 x ``size`` float mask of the cells that hold a head pixel of the ImageNet-normalised batch ``x``
    (a pixel is head where any channel is above the value a zero byte normalises to)."""
    background = (-torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype)
                  / torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype)).view(1, -1, 1, 1)
    head = (x > background + 1e-3).any(dim=1, keepdim=True).to(x.dtype)
    return F.adaptive_max_pool2d(head, size)


class HeadGate(nn.Module):
    """``f * head_cells(x)``: feature cells without a head pixel set to zero (LRP propagates it as a gate)."""

    @staticmethod
    def gate_mask(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return head_cells(x, size)

    def forward(self, f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return f * head_cells(x, f.shape[-2:])


class ConvBlock(nn.Sequential):
    def __init__(self, in_chs: int, out_chs: int):
        super().__init__(
            nn.Conv2d(in_chs, out_chs, kernel_size=3, padding=0),
            nn.BatchNorm2d(out_chs),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )


class ConvNet(nn.Module):
    """The student family. Same small interface as timm models: forward_features / forward_head /
    get_classifier / reset_classifier, plus ``gradcam_layer`` naming the last convolutional block."""

    def __init__(self, widths: Sequence[int], num_classes: int = 4, dropout: float = 0.2,
                 in_chans: int = 3, image_size: int = IMAGE_SIZE, mask_background: bool = False,
                 input_pool: int = 1):
        super().__init__()
        if input_pool < 1:
            raise ValueError(f"input_pool must be at least 1, not {input_pool}")
        self.widths = list(widths)
        self.mask_background = mask_background
        self.input_pool = nn.AvgPool2d(input_pool) if input_pool > 1 else None
        self.num_classes = num_classes
        chs = [in_chans, *self.widths]
        self.features = nn.Sequential(*[ConvBlock(chs[i], chs[i + 1]) for i in range(len(self.widths))])
        self.final_size = feature_sizes(len(self.widths), image_size // input_pool)[-1]
        self.num_features = self.widths[-1] * self.final_size ** 2
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.num_features, num_classes)
        self.gate = HeadGate() if mask_background else None
        self.gradcam_layer = "gate" if mask_background else f"features.{len(self.widths) - 1}"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(self.input_pool(x) if self.input_pool is not None else x)
        return self.gate(f, x) if self.gate is not None else f

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        # torch.flatten rather than an nn.Flatten module: Captum's LRP only accepts known module types.
        x = torch.flatten(x, 1)
        if pre_logits:
            return x
        return self.classifier(self.drop(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes)


@register_model
def convnet1(num_classes: int = 4, widths: Sequence[int] = (16, 36, 45, 54), dropout: float = 0.2,
             **kwargs) -> ConvNet:
    return ConvNet(widths, num_classes=num_classes, dropout=dropout, **kwargs)


@register_model
def convnet2(num_classes: int = 4, widths: Sequence[int] = (22, 34, 48), dropout: float = 0.2,
             **kwargs) -> ConvNet:
    return ConvNet(widths, num_classes=num_classes, dropout=dropout, **kwargs)
