"""Composites: which rule each linear layer of a model gets, by name, position (the input layer), type and
depth.

The named composites follow Zennit's (Anders et al. 2021) and the recommendations of Montavon et al. 2019
("Layer-wise relevance propagation: an overview"): a rule for bounded pixels at the input (z^B or flat), rules
that favour positive evidence in the lower convolutional layers (gamma, z+), and epsilon near the output.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from diseaseid.explain.graph import Graph, Node
from diseaseid.explain.lrp.rules import AlphaBeta, Epsilon, Flat, Gamma, Rule, ZBox, ZPlus

# A rule for every depth, or bands of ``(up_to_depth, rule)``: depth is the layer's position among the model's
# linear layers scaled to 0 (the input layer) .. 1 (the classifier), and a layer takes the first band whose
# bound is >= its depth.
DepthRules = Rule | Sequence[tuple[float, Rule]]


def _by_depth(rules: DepthRules, depth: float) -> Rule:
    if isinstance(rules, Rule):
        return rules
    for upto, rule in rules:
        if depth <= upto + 1e-12:
            return rule
    return rules[-1][1]


@dataclass(frozen=True, eq=False)
class Composite:
    """Rules per layer: ``by_name`` (module names, e.g. ``"conv_stem"``) first, then ``first`` for the
    layer that reads the input, then by type: convolutions take ``conv`` (one rule or depth bands), dense
    layers ``dense``, BatchNorms that could not be folded ``affine``."""

    name: str
    conv: DepthRules
    dense: Rule = Epsilon()
    first: Rule | None = None
    affine: Rule = Epsilon()
    by_name: Mapping[str, Rule] = field(default_factory=dict)

    def rule_for(self, node: Node, index: int, count: int) -> Rule:
        for module in node.modules or (node.name,):
            if module in self.by_name:
                return self.by_name[module]
        if index == 0 and self.first is not None:
            return self.first
        kind = node.op.kind
        if kind == "dense":
            return self.dense
        if kind == "affine":
            return self.affine
        return _by_depth(self.conv, index / max(count - 1, 1))

    def assign(self, graph: Graph) -> dict[int, Rule]:
        """``id(node) -> rule`` for every linear node of the graph, in order."""
        linear = graph.linear_nodes
        return {id(node): self.rule_for(node, i, len(linear)) for i, node in enumerate(linear)}

    def describe(self, graph: Graph) -> list[tuple[str, str]]:
        """(layer name, rule) pairs, for documentation and debugging."""
        rules = self.assign(graph)
        return [("+".join(n.modules) or n.name, repr(rules[id(n)])) for n in graph.linear_nodes]


def epsilon_composite(epsilon: float = 1e-6, name: str | None = None) -> Composite:
    """LRP-epsilon everywhere (what Captum's ``LRP`` does by default, with epsilon = 1e-9)."""
    rule = Epsilon(epsilon)
    return Composite(name or f"epsilon({epsilon:g})", conv=rule, dense=rule, affine=rule)


EPSILON = epsilon_composite(1e-6, "epsilon")
# Zennit's EpsilonPlusFlat: flat for the input layer, z+ for convolutions, epsilon for dense layers.
EPSILON_PLUS_FLAT = Composite("epsilon_plus_flat", first=Flat(), conv=ZPlus(), dense=Epsilon())
# Zennit's EpsilonGammaBox: z^B for the (ImageNet-normalised) input, gamma for convolutions, epsilon for
# dense.
EPSILON_GAMMA_BOX = Composite("epsilon_gamma_box", first=ZBox(), conv=Gamma(0.25), dense=Epsilon())
# Zennit's EpsilonAlpha2Beta1.
EPSILON_ALPHA2_BETA1 = Composite("epsilon_alpha2_beta1", conv=AlphaBeta(2.0, 1.0), dense=Epsilon())
# Montavon et al. 2019, section 10.3: gamma in the lower layers, epsilon in the middle, LRP-0 at the top.
DEPTH_GAMMA_EPSILON = Composite("depth_gamma_epsilon", first=ZBox(),
                                conv=((0.5, Gamma(0.25)), (1.0, Epsilon(0.25))), dense=Epsilon(1e-9))

COMPOSITES: dict[str, Composite] = {c.name: c for c in (
    EPSILON, EPSILON_PLUS_FLAT, EPSILON_GAMMA_BOX, EPSILON_ALPHA2_BETA1, DEPTH_GAMMA_EPSILON)}


def get_composite(composite: Composite | str) -> Composite:
    if isinstance(composite, Composite):
        return composite
    try:
        return COMPOSITES[composite]
    except KeyError:
        raise KeyError(f"unknown composite {composite!r}; known: {', '.join(sorted(COMPOSITES))}") from None

# The composite ``explain_maps`` uses unless told otherwise.
DEFAULT_COMPOSITE_NAME = EPSILON_GAMMA_BOX.name
