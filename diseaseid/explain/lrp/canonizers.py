"""Canonizers: rewrites of a model that leave its function unchanged but make LRP rules apply cleanly.

BatchNorm is an affine map per channel; folded into the convolution before it, the pair is one linear
layer, and the rules see the weights that really act on the input (Montavon et al. 2019, section 10.2;
Zennit's ``MergeBatchNorm``). The explainers fold on their own copy of the weights
(``graph.fold_batchnorm``); this context manager does the same to a module in place, for tools that work on
modules, and undoes it on exit.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

from diseaseid.explain.graph import batchnorm_affine, fold_affine, fold_batchnorm, trace


def batchnorm_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(linear module, BatchNorm module) names where the BatchNorm directly follows the linear layer and is
    the only reader of its output."""
    folded = fold_batchnorm(trace(model))
    return [(n.modules[0], n.modules[1]) for n in folded.nodes if len(n.modules) == 2]


@contextmanager
def merged_batchnorm(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, every foldable BatchNorm is merged into the layer before it and reduced to the
    identity (``running_var = 1 - eps``, so ``(x - 0) / sqrt(var + eps) = x`` exactly); on exit the
    parameters are put back, whatever happened inside."""
    saved = []
    try:
        with torch.no_grad():
            for linear_name, bn_name in batchnorm_pairs(model):
                linear, bn = model.get_submodule(linear_name), model.get_submodule(bn_name)
                had_bias = linear.bias is not None
                bn_keys = ("weight", "bias", "running_mean", "running_var")
                saved.append((linear, bn, linear.weight.data, linear.bias.data if had_bias else None,
                              {k: getattr(bn, k).data for k in bn_keys if getattr(bn, k) is not None}))
                scale, shift = batchnorm_affine(bn)
                weight, bias = fold_affine(linear.weight.data, linear.bias.data if had_bias else None, scale,
                                           shift)
                linear.weight.data = weight
                if had_bias:
                    linear.bias.data = bias
                else:
                    linear.bias = nn.Parameter(bias, requires_grad=linear.weight.requires_grad)
                bn.running_mean.data = torch.zeros_like(bn.running_mean)
                bn.running_var.data = torch.full_like(bn.running_var, 1.0 - bn.eps)
                if bn.weight is not None:
                    bn.weight.data = torch.ones_like(bn.weight)
                if bn.bias is not None:
                    bn.bias.data = torch.zeros_like(bn.bias)
        yield model
    finally:
        for linear, bn, weight, bias, bn_params in reversed(saved):
            linear.weight.data = weight
            if bias is None:
                linear.bias = None
            else:
                linear.bias.data = bias
            for key, value in bn_params.items():
                getattr(bn, key).data = value
