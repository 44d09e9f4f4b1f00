"""A 3 x 3 median filter in front of a network's first convolution: scanner noise is removed in the model, so
training (which adds its noise to the input tensor, ``diseaseid.data.augment``) and serving see the same filter.

Measured before any fine-tune (the shipped tumor models, all 1,144 validation slices, two Rician draws per level,
2026-12-05; ``cv2.medianBlur`` on the decoded slice, which this filter equals): the student's accuracy drop under
noise sigma 4 / 8 / 12 went from -1.14 / -1.88 / -2.40 to -0.09 / -0.48 / -1.27 points of its own clean accuracy,
which itself fell 0.43 points; hence a fine-tune with the filter in place (``--input-median``).

With ``input_smooth`` sigma > 0 the median is followed by a Gaussian smoothing of sigma pixels (separable,
per channel, edges replicated, as ``scipy.ndimage.gaussian_filter(mode="nearest")``): noise the median leaves
(it is built for isolated outliers, Rician noise is dense) is averaged over neighbours. The kernel sums to 1 and
the border is replicated, so the smoothing commutes with the per-channel normalisation: the served graph
smooths after normalising (``diseaseid.serving.export``). Tried for the tumor student (2026-12-06, stage
``tumor-student-smooth``: a slice or two better or worse per noise level, docs/robustness.md); no shipped model
uses it.

The median is exact (per channel, edges replicated, as OpenCV's) and made of elementwise minima and maxima only,
so it exports to ONNX and OpenVINO as they are: each column of three is sorted once for the whole image, then a
window's median is the median of (the largest column minimum, the median of the column medians, the smallest
column maximum), 18 operations in all.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from diseaseid.data.head import gaussian_weights


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


def gaussian_kernels(sigma: float, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The depthwise row and column kernels of :func:`smooth` (``channels`` x 1 x 1 x k, ``channels`` x 1 x k x 1):
    scipy's own weights (``diseaseid.data.head.gaussian_weights``), for a caller that keeps them (an exported graph
    needs kernels of a fixed shape)."""
    w = torch.from_numpy(gaussian_weights(sigma)).float()
    return w.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), w.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)


def smooth(x: torch.Tensor, sigma: float, kernels: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Each channel of the float batch ``x`` (N x C x H x W) smoothed by a Gaussian of ``sigma`` pixels, the
    border replicated; ``x`` itself where ``sigma`` is 0. ``kernels``: :func:`gaussian_kernels` of ``sigma``."""
    if not sigma > 0:
        return x
    rows, columns = kernels if kernels is not None else gaussian_kernels(sigma, x.shape[1])
    rows, columns = rows.to(x.device, x.dtype), columns.to(x.device, x.dtype)
    radius = (rows.shape[-1] - 1) // 2
    p = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    p = F.conv2d(p, rows, groups=rows.shape[0])
    return F.conv2d(p, columns, groups=columns.shape[0])


def input_filter(x: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
    """What a filtering stem reads: the 3 x 3 median of ``x``, then (``sigma`` > 0) its Gaussian smoothing."""
    return smooth(median3(x), sigma)


class MedianConv2d(nn.Conv2d):
    """A convolution that reads the 3 x 3 median of its input. Its parameters keep a plain convolution's names,
    so a model's weights load with or without the filter (``--init`` of a shipped model); the explainers read it
    as the filter, then the convolution (``diseaseid.explain.graph``)."""

    input_median = True
    input_smooth = 0.0  # sigma of the Gaussian after the median, pixels (0: none); not a parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(input_filter(x, self.input_smooth))

    @classmethod
    def of(cls, conv: nn.Conv2d, smooth: float = 0.0) -> MedianConv2d:
        out = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                  conv.groups, conv.bias is not None, conv.padding_mode)
        out.load_state_dict(conv.state_dict())
        if smooth:
            out.input_smooth = float(smooth)
        return out.to(conv.weight.device, conv.weight.dtype)


def input_smooth_of(model: nn.Module) -> float:
    """The sigma of the Gaussian after ``model``'s input median (0.0 without either)."""
    for child in model.children():
        if getattr(child, "input_median", False):
            return float(getattr(child, "input_smooth", 0.0))
    return 0.0


def without_input_median(model: nn.Module) -> nn.Module | None:
    """A shallow copy of ``model`` whose filtering convolution is a plain one with the same parameters, or None
    where ``model`` has no filter (its smoothing, if any, is left out too: the caller applies
    :func:`input_smooth_of`). The served graph filters the uint8 pixels itself (``diseaseid.serving.export``):
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


def with_input_median(model: nn.Module, stem: str = "conv_stem", smooth: float = 0.0) -> nn.Module:
    """``model`` with its first convolution (the module named ``stem``) reading the median-filtered input, then
    (``smooth`` > 0) its Gaussian smoothing of that many pixels."""
    setattr(model, stem, MedianConv2d.of(getattr(model, stem), smooth))
    return model
