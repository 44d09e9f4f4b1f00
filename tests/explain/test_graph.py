"""Tracing reproduces the model; folding BatchNorm (in the graph or in place) leaves the logits unchanged."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from diseaseid.explain.graph import (
    UnsupportedModelError,
    backprop,
    compile_graph,
    fold_batchnorm,
    model_key,
    trace,
)
from diseaseid.explain.lrp.canonizers import batchnorm_pairs, merged_batchnorm
from diseaseid.explain.ops import Add
from tests.explain.conftest import ARCHS, batch, build, toy


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# Two computations of the same sums in float32 differ by what the CPU's kernels do: 1e-6 here, 8.5e-4 on an
# Intel Xeon with AMX. In float64 both run to ~1e-15 anywhere; a wrong rule is off by orders more.
EXACT = 1e-10


def double(arch: str) -> tuple[torch.nn.Module, torch.Tensor]:
    return build(arch).double(), batch(arch, dtype=torch.float64)


@pytest.mark.parametrize("arch", ARCHS)
def test_traced_graph_reproduces_logits_with_and_without_folding(arch):
    model, x = double(arch)
    graph = trace(model)
    folded = fold_batchnorm(graph)
    with torch.no_grad():
        expected = model(x)
        assert rel(graph.run(x)[0][graph.output], expected) <= EXACT
        assert rel(folded.run(x)[0][folded.output], expected) <= EXACT
    assert len(folded.nodes) < len(graph.nodes)  # the BatchNorms are gone
    assert not any(n.op.kind == "affine" for n in folded.linear_nodes)


@pytest.mark.parametrize("arch", ARCHS)
def test_graph_gradient_equals_autograd(arch):
    model, x = double(arch)
    graph = trace(model)  # unfolded: the same arithmetic as the model
    with torch.no_grad():
        values, ctxs = graph.run(x)
        seed = torch.randn_like(values[graph.output])
        ours = backprop(graph, values, ctxs, seed)
    xr = x.clone().requires_grad_()
    (model(xr) * seed).sum().backward()
    assert rel(ours, xr.grad) <= EXACT


def test_lite0_residual_additions_are_visible():
    graph = trace(build("lite0"))
    # timm's EfficientNet-Lite0 has 9 inverted-residual blocks with a skip connection
    assert sum(isinstance(n.op, Add) for n in graph.nodes) == 9


@pytest.mark.parametrize("arch", [*ARCHS, "toy"])
def test_merged_batchnorm_canonizer_keeps_logits_and_is_undone(arch):
    model = (toy() if arch == "toy" else build(arch)).double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64) if arch == "toy" else batch(arch, dtype=torch.float64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names_before = [n for n, _ in model.named_parameters()]
    with torch.no_grad():
        expected = model(x)
        with merged_batchnorm(model):
            merged = model(x)
            bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            folded = [b for b in bns if torch.all(b.running_mean == 0) and torch.all(b.weight == 1)]
            assert folded, "no BatchNorm was merged"
        after = model(x)
    assert rel(merged, expected) <= EXACT
    assert torch.equal(after, expected)
    assert [n for n, _ in model.named_parameters()] == names_before  # added biases removed again
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_merged_batchnorm_is_undone_after_an_exception():
    model = build("convnet1")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError):
        with merged_batchnorm(model):
            raise RuntimeError("boom")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_batchnorm_pairs():
    assert batchnorm_pairs(build("convnet1")) == [(f"features.{i}.0", f"features.{i}.1") for i in range(4)]
    # the toy's BatchNorm after average pooling has no linear layer to fold into
    assert ("pool", "norm") not in batchnorm_pairs(toy())


def test_unsupported_operation_is_named():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU())
    with pytest.raises(UnsupportedModelError, match="GELU"):
        trace(model)


def test_graph_cache_follows_the_weights():
    model, x = double("convnet2")
    first = compile_graph(model)
    assert compile_graph(model) is first
    key = model_key(model)
    with torch.no_grad():
        model.classifier.weight.mul_(2.0)  # an in-place update (an optimiser step, load_state_dict)
    assert model_key(model) != key
    key = model_key(model)
    model.classifier.bias = nn.Parameter(model.classifier.bias.detach().clone())  # replaced, same values
    assert model_key(model) != key
    key = model_key(model)
    model.register_buffer("extra", torch.zeros(1))  # a new buffer
    assert model_key(model) != key and model_key(model) == model_key(model)
    second = compile_graph(model)
    assert second is not first
    with torch.no_grad():
        assert rel(second.run(x)[0][second.output], model(x)) <= EXACT
