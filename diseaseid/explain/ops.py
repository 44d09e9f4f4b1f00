"""The operations a traced model is made of, each with its forward, its gradient and (where it is fixed by the
layer type rather than chosen per layer) its relevance rule.

Linear operations (convolution, dense, per-channel affine) carry their weights and expose ``fwd``/``bwd`` with
*any* weight, so an LRP rule can run them with modified weights (``w+``, ``w + gamma w+``, ones ...).
``bwd`` is the transposed operation: the input-gradient of ``fwd`` for given output-gradient.

Relevance of the non-linear operations follows Zennit's base layer map (Anders et al. 2021):
activations pass relevance through unchanged, max-pooling routes it to the winner (its gradient), average
pooling and sums split it in proportion to each input's contribution (the "Norm" rule).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

# Stabiliser of the proportional rules (sum, average pooling), as Zennit's default.
NORM_STABILIZER = 1e-6


def stabilize(z: Tensor, epsilon: float) -> Tensor:
    """``z + epsilon * sign(z)`` with sign(0) = +1, so a zero denominator becomes ``+epsilon``.

    Written with float operations only: on the CPU, arithmetic that mixes in a boolean mask is ten times
    slower than these."""
    return z.add(torch.sign(z.add(torch.finfo(z.dtype).tiny)), alpha=epsilon)


def divide_stable(r: Tensor, z: Tensor, epsilon: float) -> Tensor:
    return r / stabilize(z, epsilon)


class Op:
    """One node of the traced graph. ``forward`` returns (output, context kept for the backward passes)."""

    def forward(self, *inputs: Tensor) -> tuple[Tensor, object]:
        raise NotImplementedError

    def gradient(self, grad: Tensor, inputs: list[Tensor], output: Tensor, ctx) -> list[Tensor]:
        """The plain vector-Jacobian product (used by Grad-CAM and the gradient baseline)."""
        raise NotImplementedError

    def relevance(self, r: Tensor, inputs: list[Tensor], output: Tensor, ctx) -> list[Tensor]:
        """Relevance for operations whose rule is fixed; linear operations take theirs from the composite."""
        raise NotImplementedError


@dataclass(eq=False)
class Linear(Op):
    """``z = W a + b`` as a 2-D convolution, a dense layer, or a per-channel affine map (an unfolded
    BatchNorm).

    ``weight`` shapes: conv ``O x I/groups x kh x kw``, dense ``O x I``, affine ``C`` (the scale)."""

    kind: str  # "conv" | "dense" | "affine"
    weight: Tensor
    bias: Tensor | None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def fwd(self, a: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
        if self.kind == "conv":
            return F.conv2d(a, w, b, self.stride, self.padding, self.dilation, self.groups)
        if self.kind == "dense":
            return F.linear(a, w, b)
        shape = (1, -1) + (1,) * (a.ndim - 2)
        z = a * w.view(shape)
        return z if b is None else z + b.view(shape)

    @property
    def pointwise(self) -> bool:
        """A 1 x 1 convolution without stride, padding or groups: a matrix product at every pixel."""
        return (self.kind == "conv" and tuple(self.weight.shape[-2:]) == (1, 1) and self.stride == (1, 1)
                and self.padding == (0, 0) and self.groups == 1)

    def bwd(self, g: Tensor, w: Tensor, input_shape: torch.Size) -> Tensor:
        """``W^T g``: the gradient of ``fwd(a, w)`` with respect to ``a``."""
        if self.kind == "conv" and self.pointwise:
            # (N, H, W, O) @ (O, I): twice as fast as a transposed 1 x 1 convolution on the CPU; the permuted
            # views are contiguous for channels-last tensors, which is how the graph runs
            return (g.permute(0, 2, 3, 1) @ w.view(w.shape[0], w.shape[1])).permute(0, 3, 1, 2)
        if self.kind == "conv":
            # conv_transpose2d rather than aten.convolution_backward: on the CPU the latter takes a slow path
            # for depthwise convolutions (tens of ms where this takes a fraction of one).
            h, wd = input_shape[-2:]
            out_h, out_w = g.shape[-2:]
            kh, kw = w.shape[-2:]
            sh, sw = self.stride
            (ph, pw), (dh, dw) = self.padding, self.dilation
            pad_h = h - ((out_h - 1) * sh - 2 * ph + dh * (kh - 1) + 1)
            pad_w = wd - ((out_w - 1) * sw - 2 * pw + dw * (kw - 1) + 1)
            return F.conv_transpose2d(g, w, None, self.stride, self.padding, (pad_h, pad_w), self.groups,
                                      self.dilation)
        if self.kind == "dense":
            return g @ w
        return g * w.view((1, -1) + (1,) * (g.ndim - 2))

    @property
    def param_shape(self) -> tuple[int, ...]:
        """Shape to broadcast a per-output-channel vector against ``weight``."""
        return (-1,) + (1,) * (self.weight.ndim - 1)

    def forward(self, a: Tensor) -> tuple[Tensor, object]:
        return self.fwd(a, self.weight, self.bias), None

    def gradient(self, grad, inputs, output, ctx):
        return [self.bwd(grad, self.weight, inputs[0].shape)]


@dataclass(eq=False)
class Activation(Op):
    """Elementwise, piecewise-linear activations: relu, relu6 (hardtanh 0..6), identity."""

    fn: str  # "relu" | "relu6"

    def forward(self, z):
        return (torch.relu(z) if self.fn == "relu" else F.hardtanh(z, 0.0, 6.0)), None

    def gradient(self, grad, inputs, output, ctx):
        if self.fn == "relu":
            return [torch.ops.aten.threshold_backward(grad, output, 0)]
        return [torch.ops.aten.hardtanh_backward(grad, inputs[0], 0.0, 6.0)]

    def relevance(self, r, inputs, output, ctx):
        # Pass rule: relevance goes through unchanged (also where relu6 saturates and the gradient is zero).
        return [r]


@dataclass(eq=False)
class Median(Op):
    """The 3 x 3 median filter a model applies to its input (``diseaseid.models.median``), and the Gaussian of
    ``smooth`` pixels after it where that is above 0. The gradient is the filter's own (each output pixel's
    gradient goes to the input pixel that was its median, spread by the Gaussian); relevance passes through to
    the same pixel, as for an activation: the maps describe the filtered slice, which has the input's
    geometry."""

    smooth: float = 0.0

    # Only a traced model with the filter makes this op, and its module has loaded diseaseid.models by then; a
    # module-level import would load the whole model zoo (timm) with the explainers: 1.4 -> 2.9 s.
    def forward(self, a):
        from diseaseid.models.median import input_filter

        return input_filter(a, self.smooth), None

    def gradient(self, grad, inputs, output, ctx):
        from diseaseid.models.median import input_filter

        with torch.enable_grad():
            a = inputs[0].detach().requires_grad_(True)
            return [torch.autograd.grad(input_filter(a, self.smooth), a, grad)[0]]

    def relevance(self, r, inputs, output, ctx):
        return [r]


@dataclass(eq=False)
class MaxPool(Op):
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    ceil_mode: bool = False

    def forward(self, a):
        return F.max_pool2d(a, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                            return_indices=True)

    def gradient(self, grad, inputs, output, indices):
        return [torch.ops.aten.max_pool2d_with_indices_backward(
            grad, inputs[0], self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
            indices)]

    def relevance(self, r, inputs, output, indices):
        # Winner takes all: the gradient of max-pooling (Zennit's default for pooling by maximum).
        return self.gradient(r, inputs, output, indices)


@dataclass(eq=False)
class AvgPool(Op):
    """``avg_pool2d`` or, with ``output_size`` set, ``adaptive_avg_pool2d``."""

    kernel_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] = (0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = True
    output_size: tuple[int, int] | None = None

    def forward(self, a):
        if self.output_size is not None:
            return F.adaptive_avg_pool2d(a, self.output_size), None
        return F.avg_pool2d(a, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad), None

    def gradient(self, grad, inputs, output, ctx):
        a = inputs[0]
        if self.output_size is not None:
            if tuple(self.output_size) == (1, 1):  # global pooling: spread evenly
                return [(grad / (a.shape[-1] * a.shape[-2])).expand_as(a)]
            return [torch.ops.aten._adaptive_avg_pool2d_backward(grad, a)]
        return [torch.ops.aten.avg_pool2d_backward(grad, a, self.kernel_size, self.stride, self.padding,
                                                   self.ceil_mode, self.count_include_pad, None)]

    def relevance(self, r, inputs, output, ctx):
        s = divide_stable(r, output, NORM_STABILIZER)
        return [inputs[0] * self.gradient(s, inputs, output, ctx)[0]]


@dataclass(eq=False)
class Flatten(Op):
    start_dim: int = 1
    end_dim: int = -1

    def forward(self, a):
        return torch.flatten(a, self.start_dim, self.end_dim), None

    def gradient(self, grad, inputs, output, ctx):
        return [grad.reshape(inputs[0].shape)]

    def relevance(self, r, inputs, output, ctx):
        return self.gradient(r, inputs, output, ctx)


@dataclass(eq=False)
class Gate(Op):
    """``a * mask(x, size of a)``: ``a`` gated by a 0/1 mask computed from another value (a convnet's head
    cells, from its input). The mask is a constant for propagation: gradient and relevance go to ``a`` only."""
    mask: Callable[[Tensor, tuple[int, int]], Tensor]

    def forward(self, a, x):
        m = self.mask(x, tuple(a.shape[-2:]))
        return a * m, m

    def gradient(self, grad, inputs, output, ctx):
        return [grad * ctx, torch.zeros_like(inputs[1])]

    def relevance(self, r, inputs, output, ctx):
        return self.gradient(r, inputs, output, ctx)


@dataclass(eq=False)
class Add(Op):
    """A residual sum ``x + y``: relevance splits in proportion to each summand's contribution."""

    def forward(self, x, y):
        return x + y, None

    def gradient(self, grad, inputs, output, ctx):
        return [grad, grad]

    def relevance(self, r, inputs, output, ctx):
        s = divide_stable(r, output, NORM_STABILIZER)
        return [inputs[0] * s, inputs[1] * s]
