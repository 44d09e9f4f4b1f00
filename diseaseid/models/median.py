"""A 3 x 3 median filter in front of a network's first convolution: scanner noise is removed in the model, so
training (which adds its noise to the input tensor, ``diseaseid.data.augment``) and serving see the same filter.

Measured before any fine-tune (the shipped tumor models, all 1,144 validation slices, two Rician draws per level,
2026-12-05; ``cv2.medianBlur`` on the decoded slice, which this filter equals): the student's accuracy drop under
noise sigma 4 / 8 / 12 went from -1.14 / -1.88 / -2.40 to -0.09 / -0.48 / -1.27 points of its own clean accuracy,
which itself fell 0.43 points; hence a fine-tune with the filter in place (``--input-median``).

The median is exact (per channel, edges replicated, as OpenCV's) and made of elementwise minima and maxima only,
so it exports to ONNX and OpenVINO as they are: each column of three is sorted once for the whole image, then a
window's median is the median of (the largest column minimum, the median of the column medians, the smallest
column maximum), 18 operations in all.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn


def _median_of_three(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return torch.maximum(torch.minimum(a, b), torch.minimum(torch.maximum(a, b), c))


def _replicate_border(x: torch.Tensor) -> torch.Tensor:
    """``F.pad(x, (1, 1, 1, 1), mode="replicate")`` of any dtype (replicate padding refuses integers)."""
    p = torch.cat([x[..., :1, :], x, x[..., -1:, :]], dim=-2)
    return torch.cat([p[..., :1], p, p[..., -1:]], dim=-1)


def median3(x: torch.Tensor) -> torch.Tensor:
    """The 3 x 3 median of each channel of ``x`` (N x C x H x W, any dtype), the border replicated."""
    p = _replicate_border(x)  # slices by offsets from the ends: no shape read in an exported graph
    up, centre, down = p[..., :-2, :], p[..., 1:-1, :], p[..., 2:, :]
    first, second = torch.minimum(up, centre), torch.maximum(up, centre)
    low, high = torch.minimum(first, down), torch.maximum(second, down)
    middle = torch.maximum(first, torch.minimum(second, down))

    def columns(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return t[..., :-2], t[..., 1:-1], t[..., 2:]

    (l0, l1, l2), (m0, m1, m2), (h0, h1, h2) = columns(low), columns(middle), columns(high)
    lows = torch.maximum(torch.maximum(l0, l1), l2)
    highs = torch.minimum(torch.minimum(h0, h1), h2)
    return _median_of_three(lows, _median_of_three(m0, m1, m2), highs)


class MedianConv2d(nn.Conv2d):
    """A convolution that reads the 3 x 3 median of its input. Its parameters keep a plain convolution's names,
    so a model's weights load with or without the filter (``--init`` of a shipped model); the explainers read it
    as the filter, then the convolution (``diseaseid.explain.graph``)."""

    input_median = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(median3(x))

    @classmethod
    def of(cls, conv: nn.Conv2d) -> MedianConv2d:
        out = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                  conv.groups, conv.bias is not None, conv.padding_mode)
        out.load_state_dict(conv.state_dict())
        return out.to(conv.weight.device, conv.weight.dtype)


def without_input_median(model: nn.Module) -> nn.Module | None:
    """A shallow copy of ``model`` whose filtering convolution is a plain one with the same parameters, or None
    where ``model`` has no filter. The served graph filters the uint8 pixels itself (``diseaseid.serving.export``):
    normalisation is increasing in each channel, so the median of the normalised pixels is the normalised median
    of the raw ones, to the bit, and the filter runs on a quarter of the bytes (ONNX Runtime: 0.90 -> 0.27 ms per
    224 px slice, OpenVINO 0.37 -> 0.31 ms; two threads, a /tmp script, 2026-12-05)."""
    for name, child in model.named_children():
        if getattr(child, "input_median", False):
            plain = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride, child.padding,
                              child.dilation, child.groups, child.bias is not None, child.padding_mode)
            plain.weight, plain.bias = child.weight, child.bias  # the same parameters, not copies
            shallow = copy.copy(model)  # shares every attribute, the dict of submodules too: replace that one
            shallow._modules = {**model._modules, name: plain}
            return shallow
    return None


def with_input_median(model: nn.Module, stem: str = "conv_stem") -> nn.Module:
    """``model`` with its first convolution (the module named ``stem``) reading the median-filtered input."""
    setattr(model, stem, MedianConv2d.of(getattr(model, stem)))
    return model
