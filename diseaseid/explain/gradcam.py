"""Grad-CAM (Selvaraju et al. 2017), Grad-CAM++ (Chattopadhay et al. 2018) and HiResCAM (Draelos & Carin
2020) over the traced graph.

Grad-CAM: the gradient of the class score (the logit, before softmax) with respect to a convolutional layer's
feature maps ``A``, averaged over space, weights the maps: ``cam = ReLU(sum_c mean(dy/dA_c) A_c)``, upsampled
bilinearly to the input and scaled to [0, 1]. Each model names its layer in ``model.gradcam_layer`` (the last
feature map before pooling). Grad-CAM++ weighs the gradient differently; HiResCAM multiplies gradient and maps
element by element before summing over channels, which is exactly each position's contribution to the logit
when the head is flatten + dense (as in the students), where Grad-CAM's spatial mean throws the positions
away.

The backward pass stops at that layer, so beyond the forward pass Grad-CAM only costs the classifier head; and
it can reuse the forward pass that LRP already made (``from_forward``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from diseaseid.explain.graph import Graph, backprop, cached, compile_graph
from diseaseid.explain.lrp.propagate import select_targets

Tensor = torch.Tensor


@dataclass
class CAM:
    maps: Tensor  # N x H x W in [0, 1]
    logits: Tensor
    targets: Tensor


def target_onehot(logits: Tensor, targets: Tensor) -> Tensor:
    return torch.zeros_like(logits).scatter_(1, targets.view(-1, 1), 1.0)


VARIANTS = ("gradcam", "gradcam++", "hirescam")


def class_activation(activations: Tensor, grads: Tensor, variant: str) -> Tensor:
    """``sum_c weight_c A_c`` before the ReLU, N x 1 x h x w."""
    if variant == "hirescam":
        return (grads * activations).sum(1, keepdim=True)
    weights = cam_weights(activations, grads, variant == "gradcam++")
    return (weights[:, :, None, None] * activations).sum(1, keepdim=True)


def cam_weights(activations: Tensor, grads: Tensor, plus: bool) -> Tensor:
    """Channel weights, N x C. Grad-CAM: the spatial mean of the gradient. Grad-CAM++: the closed form of
    Chattopadhay et al. (2018, eq. 19, with the exponential of the score), as pytorch-grad-cam computes it."""
    if not plus:
        return grads.mean((2, 3))
    g2 = grads * grads
    g3 = g2 * grads
    sum_a = activations.sum((2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + sum_a * g3 + 1e-6)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    return (alpha * grads.clamp(min=0)).sum((2, 3))


def normalize_maps(cam: Tensor) -> Tensor:
    """Each map scaled to [0, 1] by its own minimum and maximum (all zero when the map is flat)."""
    flat = cam.flatten(1)
    low = flat.min(1, keepdim=True).values
    span = flat.max(1, keepdim=True).values - low
    return ((flat - low) / span.clamp(min=1e-12)).view_as(cam)


class GradCAM:
    """``GradCAM.for_model(model)(x)`` -> CAM; ``layer`` defaults to ``model.gradcam_layer``; ``variant`` is
    one of ``VARIANTS``."""

    def __init__(self, model: nn.Module | None = None, layer: str | None = None, variant: str = "gradcam",
                 graph: Graph | None = None):
        layer = layer or getattr(model, "gradcam_layer", None)
        if layer is None:
            raise ValueError("name the layer: the model has no gradcam_layer attribute")
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
        self.layer, self.variant = layer, variant
        self.graph = graph if graph is not None else compile_graph(model, fold=True)
        try:
            self.index = self.graph.value_of(layer)
        except KeyError:  # the layer's own output was folded away: use the graph as the model has it
            self.graph = compile_graph(model, fold=False)
            self.index = self.graph.value_of(layer)

    @classmethod
    def for_model(cls, model: nn.Module, layer: str | None = None, variant: str = "gradcam") -> GradCAM:
        return cached(model, ("gradcam", layer, variant), lambda: cls(model, layer, variant))

    def __call__(self, x: Tensor, target=None, size: tuple[int, int] | None = None) -> CAM:
        with torch.no_grad():
            values, ctxs = self.graph.run(x)
            return self.from_forward(values, ctxs, target, size or tuple(x.shape[-2:]))

    def from_forward(self, values: list, ctxs: list, target, size: tuple[int, int]) -> CAM:
        """Grad-CAM from a forward pass of the same graph (``graph.run``), e.g. the one LRP made."""
        with torch.no_grad():
            logits = values[self.graph.output]
            targets = select_targets(logits, target)
            activations = values[self.index]
            grads = backprop(self.graph, values, ctxs, target_onehot(logits, targets), upto=self.index)
            cam = torch.relu(class_activation(activations, grads, self.variant))
            if tuple(cam.shape[-2:]) != tuple(size):
                cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
            return CAM(normalize_maps(cam[:, 0]), logits, targets)
