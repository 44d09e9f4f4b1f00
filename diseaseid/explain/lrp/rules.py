"""LRP rules for linear layers: how the relevance ``R_k`` of a layer's outputs goes back to its inputs.

Every rule is the same four steps (Montavon et al. 2019, "Layer-wise relevance propagation: an overview"):
``z_k = eps + sum_j rho(a_j w_jk)``, ``s_k = R_k / z_k``, ``c_j = sum_k rho(w_jk) s_k`` (the transposed
layer), ``R_j = a_j c_j``; the rules differ in ``rho`` and in which inputs they use. A rule is data in two
forms:

* ``relevance`` -- the fast form the explainer runs: modified weights are prepared once per model
  (``prepare``), per-shape constants cached, and algebra shares work between terms (e.g. gamma needs one
  extra forward convolution, not four);
* ``literal`` -- Zennit's description of the same rule (input modifiers, parameter modifiers, a gradient
  mapper and a reducer; Anders et al. 2021), which ``reference.py`` transcribes with autograd, one layer at
  a time. The tests hold the two forms equal.

Rules: epsilon and LRP-0 (Bach et al. 2015), gamma (Montavon et al. 2019; generalised to signed inputs as in
Zennit), alpha-beta and z-plus (Bach et al. 2015; Montavon et al. 2017), flat (Lapuschkin et al. 2019),
w-square and z^B for the bounded input (Montavon et al. 2017, "Explaining nonlinear classification
decisions with deep Taylor decomposition").
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from diseaseid.data.preprocess import IMAGENET_MEAN, IMAGENET_STD
from diseaseid.explain.ops import Linear, divide_stable, stabilize

Tensor = torch.Tensor
Params = tuple[Tensor, Tensor | None]


class BasicHookForm(NamedTuple):
    """Zennit's BasicHook form: part ``p`` runs the layer on ``input_modifiers[p](a)`` with
    ``param_modifiers[p](w, b)``; ``gradient_mapper(R, outputs)`` gives each part's ``s``; ``reducer(inputs,
    gradients)`` combines the transposed products into the input relevance."""

    input_modifiers: list[Callable[[Tensor], Tensor]]
    param_modifiers: list[Callable[[Tensor, Tensor | None], Params]]
    gradient_mapper: Callable[[Tensor, list[Tensor]], list[Tensor]]
    reducer: Callable[[list[Tensor], list[Tensor]], Tensor]


def _positive(b: Tensor | None) -> Tensor | None:
    return None if b is None else b.clamp(min=0)


def _negative(b: Tensor | None) -> Tensor | None:
    return None if b is None else b.clamp(max=0)


def _same(x):
    return x


def _no_bias(mod):
    return lambda w, b: (mod(w), None)


class Rule:
    """Base class; subclasses are frozen dataclasses (hashable, printable, comparable)."""

    def prepare(self, op: Linear) -> dict:
        """Tensors that depend only on the weights (computed once per model)."""
        return {}

    def relevance(self, op: Linear, a: Tensor, z: Tensor, r: Tensor, prep: dict, nonnegative: bool) -> Tensor:
        """Input relevance of ``op`` given its input ``a``, output ``z`` (with bias) and output relevance
        ``r``. ``nonnegative`` says ``a >= 0`` holds by construction (it follows a ReLU), which allows
        cheaper forms."""
        raise NotImplementedError

    def literal(self, op: Linear) -> BasicHookForm:
        raise NotImplementedError


@dataclass(frozen=True)
class Epsilon(Rule):
    """``R_j = sum_k a_j w_jk R_k / (z_k + eps sign(z_k))``; ``epsilon`` near 0 is LRP-0 (Bach et al.
    2015)."""

    epsilon: float = 1e-6

    def relevance(self, op, a, z, r, prep, nonnegative):
        return a * op.bwd(divide_stable(r, z, self.epsilon), op.weight, a.shape)

    def literal(self, op):
        eps = self.epsilon
        return BasicHookForm([_same], [lambda w, b: (w, b)],
                             lambda r, outs: [divide_stable(r, outs[0], eps)],
                             lambda ins, grads: ins[0] * grads[0])


@dataclass(frozen=True)
class AlphaBeta(Rule):
    """Positive and negative contributions apart: ``R_j = sum_k (alpha z+_jk / z+_k - beta z-_jk / z-_k)
    R_k``, ``alpha - beta = 1`` (Bach et al. 2015). Positive contributions are ``a+ w+`` and ``a- w-`` (and
    ``b+``)."""

    alpha: float = 2.0
    beta: float = 1.0
    stabilizer: float = 1e-6

    def __post_init__(self):
        if self.alpha < 0 or self.beta < 0 or abs(self.alpha - self.beta - 1.0) > 1e-12:
            raise ValueError("alpha-beta needs alpha, beta >= 0 and alpha - beta = 1")

    def prepare(self, op):
        return {"w+": op.weight.clamp(min=0), "w-": op.weight.clamp(max=0), "b+": _positive(op.bias),
                "b-": _negative(op.bias)}

    def relevance(self, op, a, z, r, prep, nonnegative):
        wp, wn, eps = prep["w+"], prep["w-"], self.stabilizer
        if nonnegative:  # then a+ = a, a- = 0: the positive part is a w+ (+ b+), the negative a w- (+ b-)
            zp = op.fwd(a, wp, prep["b+"])
            out = op.bwd(r / (zp + eps), wp, a.shape)  # zp >= 0: its stabiliser is +eps
            if self.alpha != 1.0:
                out = out * self.alpha
            if self.beta:
                out = out - self.beta * op.bwd(divide_stable(r, z - zp, eps), wn, a.shape)
            return a * out
        ap, an = a.clamp(min=0), a.clamp(max=0)
        zp = op.fwd(ap, wp, prep["b+"]) + op.fwd(an, wn)
        sp = divide_stable(r, zp, eps)
        out = ap * op.bwd(sp, wp, a.shape) + an * op.bwd(sp, wn, a.shape)
        if self.alpha != 1.0:
            out = out * self.alpha
        if self.beta:
            sn = divide_stable(r, z - zp, eps)
            out = out - self.beta * (ap * op.bwd(sn, wn, a.shape) + an * op.bwd(sn, wp, a.shape))
        return out

    def literal(self, op):
        alpha, beta, eps = self.alpha, self.beta, self.stabilizer
        pos = lambda w: w.clamp(min=0)  # noqa: E731
        neg = lambda w: w.clamp(max=0)  # noqa: E731
        return BasicHookForm(
            [lambda a: a.clamp(min=0), lambda a: a.clamp(max=0)] * 2,
            [lambda w, b: (pos(w), _positive(b)), _no_bias(neg),
             lambda w, b: (neg(w), _negative(b)), _no_bias(pos)],
            lambda r, outs: [divide_stable(r, outs[0] + outs[1], eps)] * 2
            + [divide_stable(r, outs[2] + outs[3], eps)] * 2,
            lambda ins, g: alpha * (ins[0] * g[0] + ins[1] * g[1]) - beta * (ins[2] * g[2] + ins[3] * g[3]))


@dataclass(frozen=True)
class ZPlus(AlphaBeta):
    """z+ (alpha = 1, beta = 0): only positive contributions carry relevance (Montavon et al. 2017)."""

    alpha: float = field(default=1.0, init=False)
    beta: float = field(default=0.0, init=False)
    stabilizer: float = 1e-6


@dataclass(frozen=True)
class Gamma(Rule):
    """Favour positive contributions: ``rho(w) = w + gamma w+`` (Montavon et al. 2019), in Zennit's form
    for signed inputs and outputs: outputs ``z > 0`` use ``z + gamma P``, outputs ``z < 0`` use ``z + gamma
    N``, where ``P`` and ``N = z - P`` sum the positive and the negative contributions."""

    gamma: float = 0.25
    stabilizer: float = 1e-6

    def prepare(self, op):
        wp = op.weight.clamp(min=0)
        return {"w+": wp, "b+": _positive(op.bias), "g w+": self.gamma * wp}

    def relevance(self, op, a, z, r, prep, nonnegative):
        g, eps = self.gamma, self.stabilizer
        if nonnegative:
            p = op.fwd(a, prep["w+"], prep["b+"])
        else:
            ap, an = a.clamp(min=0), a.clamp(max=0)
            # a+ w+ + a- w- = |a| w+ + a- w, with w- = w - w+
            p = op.fwd(ap - an, prep["w+"], prep["b+"]) + op.fwd(an, op.weight)
        # P >= 0, so z + g P has the sign of z where z > 0 and (1 + g) z - g P = z + g N where z < 0: the
        # stabiliser's sign is known and the two denominators are one, chosen by a float mask (no booleans)
        sign = torch.sign(z)
        pos = sign.clamp(min=0)
        neg = pos - sign
        zp = torch.add(z, p, alpha=g).add_(eps)
        zn = torch.add(zp, z, alpha=-(2 + g)).neg_()  # (1 + g) z - g P - eps
        s = r / torch.lerp(zp, zn, neg)
        if nonnegative:
            # a ((w + g w+)^T sp + (w + g w-)^T sn) = a (w^T (sp + (1 + g) sn) + g w+^T (sp - sn)),
            # sp = s pos, sn = s neg (outputs with z = 0 take no part, as in Zennit)
            c = op.bwd(s * torch.add(pos, neg, alpha=1 + g), op.weight, a.shape)
            return c.add_(op.bwd(s * sign, prep["g w+"], a.shape)).mul_(a)
        sp, sn = s * pos, s * neg
        tp = op.bwd(sp, op.weight, a.shape)
        tn = op.bwd(sn, op.weight, a.shape)
        d = op.bwd(s * sign, prep["w+"], a.shape)
        # a+ ((w + g w+)^T sp + (w + g w-)^T sn) + a- ((w + g w-)^T sp + (w + g w+)^T sn)
        return a * (tp + tn) + g * (ap * (d + tn) + an * (tp - d))

    def literal(self, op):
        g, eps = self.gamma, self.stabilizer

        def plus(w):
            return w + g * w.clamp(min=0)

        def minus(w):
            return w + g * w.clamp(max=0)

        def with_bias(mod):
            return lambda w, b: (mod(w), None if b is None else mod(b))

        def mapper(r, outs):
            z = outs[4]
            sp = (z > 0) * r / stabilize(outs[0] + outs[1], eps)
            sn = (z < 0) * r / stabilize(outs[2] + outs[3], eps)
            return [sp, sp, sn, sn, torch.zeros_like(r)]

        return BasicHookForm(
            [lambda a: a.clamp(min=0), lambda a: a.clamp(max=0)] * 2 + [_same],
            [with_bias(plus), _no_bias(minus), with_bias(minus), _no_bias(plus), lambda w, b: (w, b)],
            mapper,
            lambda ins, grads: sum(i * gr for i, gr in zip(ins[:4], grads[:4], strict=False)))


class _ConstantInput(Rule):
    """Rules that ignore the input values (flat, w-square): relevance is spread by a fixed weight only."""

    stabilizer: float

    def modified(self, w: Tensor) -> Tensor:
        raise NotImplementedError

    def prepare(self, op):
        return {"w": self.modified(op.weight), "den": {}}

    def relevance(self, op, a, z, r, prep, nonnegative):
        key = (tuple(a.shape[1:]), a.dtype, a.device)
        den = prep["den"].get(key)
        if den is None:  # z_k = sum_j rho(w_jk) over the inputs each output sees (border outputs see fewer)
            den = prep["den"][key] = op.fwd(a.new_ones((1, *a.shape[1:])), prep["w"])
        return op.bwd(divide_stable(r, den, self.stabilizer), prep["w"], a.shape)

    def literal(self, op):
        eps = self.stabilizer
        mod = self.modified
        return BasicHookForm([torch.ones_like], [lambda w, b: (mod(w), None)],
                             lambda r, outs: [divide_stable(r, outs[0], eps)],
                             lambda ins, grads: grads[0])


@dataclass(frozen=True)
class Flat(_ConstantInput):
    """All weights one, inputs ignored: relevance spreads evenly over each output's receptive field
    (Lapuschkin et al. 2019). Used for the input layer."""

    stabilizer: float = 1e-6

    def modified(self, w):
        return torch.ones_like(w)


@dataclass(frozen=True)
class WSquare(_ConstantInput):
    """``rho(w) = w^2``, inputs ignored (Montavon et al. 2017): for an unbounded input layer."""

    stabilizer: float = 1e-6

    def modified(self, w):
        return w * w


IMAGENET_LOW = tuple((0.0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=False))
IMAGENET_HIGH = tuple((1.0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=False))


@dataclass(frozen=True)
class ZBox(Rule):
    """z^B for inputs bounded by ``low <= x <= high`` per channel (Montavon et al. 2017):
    ``R_j = sum_k (x_j w_jk - l_j w+_jk - h_j w-_jk) / (sum_j ...) R_k``. The defaults are the bounds of an
    ImageNet-normalised image whose pixels lie in [0, 1]."""

    low: tuple[float, ...] = IMAGENET_LOW
    high: tuple[float, ...] = IMAGENET_HIGH
    stabilizer: float = 1e-6

    def bounds(self, like: Tensor) -> tuple[Tensor, Tensor]:
        shape = (1, -1) + (1,) * (like.ndim - 2) if len(self.low) > 1 else (1,)
        low = torch.tensor(self.low, dtype=like.dtype, device=like.device).view(shape)
        high = torch.tensor(self.high, dtype=like.dtype, device=like.device).view(shape)
        return low.expand(1, *like.shape[1:]), high.expand(1, *like.shape[1:])

    def prepare(self, op):
        w = op.weight
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        prep = {"w+": wp, "w-": wn, "shift": {}}
        if op.kind == "dense" or (op.kind == "conv" and op.groups == 1):
            # one transposed call computes w^T s, w+^T s and w-^T s (stacked along the input channels)
            prep["stacked"] = torch.cat([w, wp, wn], dim=1)
        return prep

    def relevance(self, op, a, z, r, prep, nonnegative):
        low, high = self.bounds(a)
        key = (tuple(a.shape[1:]), a.dtype, a.device)
        shift = prep["shift"].get(key)
        if shift is None:  # l w+ + h w- (+ b+ + b-) does not depend on the input: computed once per shape
            shift = prep["shift"][key] = (op.fwd(low, prep["w+"], _positive(op.bias))
                                          + op.fwd(high, prep["w-"], _negative(op.bias)))
        s = divide_stable(r, z - shift, self.stabilizer)
        if "stacked" in prep:
            c = a.shape[1]
            stacked_shape = (a.shape[0], 3 * c, *a.shape[2:])
            both = op.bwd(s, prep["stacked"], stacked_shape)
            cw, cp, cn = both[:, :c], both[:, c:2 * c], both[:, 2 * c:]
        else:
            cw, cp, cn = (op.bwd(s, w, a.shape) for w in (op.weight, prep["w+"], prep["w-"]))
        return a * cw - low * cp - high * cn

    def literal(self, op):
        eps = self.stabilizer
        rule = self
        return BasicHookForm(
            [_same, lambda a: rule.bounds(a)[0].expand_as(a).clone(),
             lambda a: rule.bounds(a)[1].expand_as(a).clone()],
            [lambda w, b: (w, b), lambda w, b: (w.clamp(min=0), _positive(b)),
             lambda w, b: (w.clamp(max=0), _negative(b))],
            lambda r, outs: [divide_stable(r, outs[0] - outs[1] - outs[2], eps)] * 3,
            lambda ins, g: ins[0] * g[0] - ins[1] * g[1] - ins[2] * g[2])
