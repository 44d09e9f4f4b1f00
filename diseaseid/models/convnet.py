"""Compact students: stacks of [3x3 conv (no padding) -> BatchNorm -> ReLU -> 2x2 max-pool], then a linear head.

ConvNet1 (4 blocks, 16/36/45/54 channels) and ConvNet2 (3 blocks, 22/34/48) are the widths an earlier
hyper-parameter search found; both take their widths as arguments so the search can tune them.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from diseaseid.data.preprocess import IMAGE_SIZE
from diseaseid.models._registry import register_model


def feature_sizes(num_blocks: int, image_size: int = IMAGE_SIZE) -> list[int]:
    """Spatial size after each block: conv3x3 without padding (-2), then max-pool 2x2 (floor /2)."""
    sizes, s = [], image_size
    for _ in range(num_blocks):
        s = (s - 2) // 2
        sizes.append(s)
    return sizes


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
                 in_chans: int = 3, image_size: int = IMAGE_SIZE):
        super().__init__()
        self.widths = list(widths)
        self.num_classes = num_classes
        chs = [in_chans, *self.widths]
        self.features = nn.Sequential(*[ConvBlock(chs[i], chs[i + 1]) for i in range(len(self.widths))])
        self.final_size = feature_sizes(len(self.widths), image_size)[-1]
        self.num_features = self.widths[-1] * self.final_size ** 2
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.num_features, num_classes)
        self.gradcam_layer = f"features.{len(self.widths) - 1}"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

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
