"""The fast propagation equals a slow, literal transcription of each rule (Zennit's general form, autograd,
one layer at a time), for every rule and composite, on every architecture and on a model with every
operation."""
from __future__ import annotations

import pytest
import torch

from diseaseid.explain.lrp import (
    COMPOSITES,
    LRP,
    AlphaBeta,
    Composite,
    Epsilon,
    Flat,
    Gamma,
    WSquare,
    ZBox,
    ZPlus,
)
from diseaseid.explain.lrp.reference import reference_relevance
from tests.explain.conftest import ARCHS, batch, build, toy

# every rule somewhere: first layer, convolutions by depth, dense layers, the unfolded BatchNorm
MIXED = Composite("mixed", first=WSquare(), conv=((0.3, Gamma(0.5)), (0.6, AlphaBeta(2, 1)), (1.0, ZPlus())),
                  dense=Epsilon(0.01), affine=Gamma(0.1), by_name={"fc": Flat()})


def rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", sorted(COMPOSITES))
def test_fast_equals_literal_on_architectures(arch, name):
    model = build(arch).double()
    x = batch(arch, 2, dtype=torch.float64)
    lrp = LRP.for_model(model, name)
    fast = lrp(x)
    slow, targets = reference_relevance(lrp, x)
    assert torch.equal(fast.targets, targets)
    assert rel(fast.relevance, slow) <= 1e-9


@pytest.mark.parametrize("composite", [*COMPOSITES.values(), MIXED], ids=lambda c: c.name)
@pytest.mark.parametrize("canonize", [True, False])
def test_fast_equals_literal_on_every_operation(composite, canonize):
    model = toy().double()
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    lrp = LRP(model, composite, canonize=canonize)
    if canonize:
        assert any(isinstance(rule, Gamma) for _, rule in lrp.rules) or composite is not MIXED
    fast = lrp(x, target=[0, 1, 2])
    slow, _ = reference_relevance(lrp, x, target=[0, 1, 2])
    assert rel(fast.relevance, slow) <= 1e-9


def test_composite_assigns_rules_by_position_type_depth_and_name():
    lrp = LRP(toy(), MIXED)
    rules = dict(lrp.rules)
    assert isinstance(rules["stem"], WSquare)  # the input layer
    assert isinstance(rules["grouped+bn"], Gamma)  # first band of convolutions (BatchNorm folded in)
    block = rules["block.conv+block.bn"]
    assert isinstance(block, AlphaBeta) and not isinstance(block, ZPlus)
    assert isinstance(rules["norm"], Gamma)  # the BatchNorm that could not be folded
    assert isinstance(rules["fc"], Flat)  # by name
    assert isinstance(rules["head"], Epsilon)


def test_zbox_default_bounds_are_the_normalised_pixel_range():
    from diseaseid.data.tensors import normalize

    rule = ZBox()
    low, high = rule.bounds(torch.zeros(1, 3, 2, 2))
    black = normalize(torch.zeros(1, 2, 2, 3, dtype=torch.uint8))
    white = normalize(torch.full((1, 2, 2, 3), 255, dtype=torch.uint8))
    assert torch.allclose(low, black) and torch.allclose(high, white)


def test_alpha_beta_rejects_bad_parameters():
    with pytest.raises(ValueError):
        AlphaBeta(alpha=2.0, beta=2.0)


def test_targets_select_the_explained_logit():
    model = build("convnet2")
    x = batch("convnet2", 2)
    lrp = LRP.for_model(model, "epsilon")
    for t in range(4):
        out = lrp(x, target=t)
        assert out.targets.tolist() == [t, t]
    assert torch.equal(lrp(x).targets, out.logits.argmax(1))
    with pytest.raises(ValueError):
        lrp(x, target=4)
    with pytest.raises(ValueError):
        lrp(x, target=[0, 1, 2])


def test_batched_equals_one_by_one():
    # float64: float32 kernels may pick other algorithms for other batch sizes, and round differently on other
    # CPUs (8.5e-4 relative on an Intel Xeon with AMX); mixing samples would differ by far more
    model = build("lite0").double()
    x = batch("lite0", 3, dtype=torch.float64)
    lrp = LRP.for_model(model)
    together = lrp(x).relevance
    alone = torch.cat([lrp(x[i:i + 1]).relevance for i in range(3)])
    assert rel(together, alone) <= 1e-10
