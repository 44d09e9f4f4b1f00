"""Layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019) over a traced graph.

One forward pass without autograd keeps every layer's input and output; one backward sweep then applies,
layer by layer, the rule the composite assigned (``rules.py``) or the fixed rule of a non-linear operation
(``ops.py``). The sweep calls the kernels directly (a transposed convolution per linear layer and rule
term), so there is no autograd graph to build, no per-call copy of the model, and the modified weights are
prepared once per model.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from diseaseid.explain.graph import Graph, cached, compile_graph
from diseaseid.explain.lrp.composites import (
    DEFAULT_COMPOSITE_NAME,
    EPSILON_GAMMA_BOX,
    Composite,
    get_composite,
)
from diseaseid.explain.ops import Linear

Tensor = torch.Tensor


@dataclass
class Relevance:
    """``relevance``: N x C x H x W input relevance; ``logits``: N x K; ``targets``: N class indices
    explained. With ``record=True``, ``values[v]`` is the relevance of every value ``v`` of the graph and
    ``edges[(i, v)]`` the part of it that node ``i`` (one of the readers of ``v``) sent back."""

    relevance: Tensor
    logits: Tensor
    targets: Tensor
    values: list[Tensor | None] | None = None
    edges: dict[tuple[int, int], Tensor] | None = None


def select_targets(logits: Tensor, target: int | Tensor | list | None) -> Tensor:
    """Class index per sample: the prediction when ``target`` is None, else one index or one per sample."""
    if target is None:
        return logits.argmax(1)
    t = torch.as_tensor(target, device=logits.device, dtype=torch.long)
    if t.ndim == 0:
        t = t.expand(logits.shape[0])
    if t.shape != (logits.shape[0],):
        raise ValueError(f"target must be one index or {logits.shape[0]} indices, got shape {tuple(t.shape)}")
    if (t < 0).any() or (t >= logits.shape[1]).any():
        raise ValueError(f"target out of range 0..{logits.shape[1] - 1}")
    return t


def output_relevance(logits: Tensor, targets: Tensor) -> Tensor:
    """The explained logit itself, on its class; zero elsewhere (relevance then sums to the logit)."""
    index = targets.view(-1, 1)
    return torch.zeros_like(logits).scatter_(1, index, logits.gather(1, index))


class LRP:
    """LRP for a model. Build once per model (``LRP.for_model`` caches it) and call per batch:
    ``LRP.for_model(model)(x).relevance``."""

    def __init__(self, model: nn.Module | None = None, composite: Composite | str = EPSILON_GAMMA_BOX,
                 canonize: bool = True, graph: Graph | None = None):
        self.composite = get_composite(composite)
        self.graph = graph if graph is not None else compile_graph(model, fold=canonize)
        rules = self.composite.assign(self.graph)
        nonnegative = self.graph.nonnegative_values()
        # per node: None for fixed-rule operations, else (rule, prepared tensors, input known >= 0)
        self.plan: list[tuple | None] = []
        with torch.no_grad():
            for node in self.graph.nodes:
                if isinstance(node.op, Linear):
                    rule = rules[id(node)]
                    self.plan.append((rule, rule.prepare(node.op), node.inputs[0] in nonnegative))
                else:
                    self.plan.append(None)

    @classmethod
    def for_model(cls, model: nn.Module, composite: Composite | str = DEFAULT_COMPOSITE_NAME,
                  canonize: bool = True) -> LRP:
        composite = get_composite(composite)
        return cached(model, ("lrp", composite, canonize), lambda: cls(model, composite, canonize))

    @property
    def rules(self) -> list[tuple[str, object]]:
        pairs = zip(self.graph.nodes, self.plan, strict=True)
        return [("+".join(n.modules) or n.name, p[0]) for n, p in pairs if p]

    def __call__(self, x: Tensor, target: int | Tensor | list | None = None,
                 record: bool = False) -> Relevance:
        with torch.no_grad():
            values, ctxs = self.graph.run(x)
            logits = values[self.graph.output]
            targets = select_targets(logits, target)
            edges = {} if record else None
            by_value = self.propagate(values, ctxs, output_relevance(logits, targets), edges)
            return Relevance(by_value[0], logits, targets, by_value if record else None, edges)

    def propagate(self, values: list, ctxs: list, seed: Tensor,
                  edges: dict | None = None) -> list[Tensor | None]:
        """Relevance of every value (only the input's unless ``edges`` is given, then every value's, and in
        ``edges`` what each node sent to each of its inputs), from ``seed`` at the output."""
        record = edges is not None
        graph = self.graph
        rel: list[Tensor | None] = [None] * graph.num_values
        rel[graph.output] = seed
        for i in range(len(graph.nodes) - 1, -1, -1):
            node = graph.nodes[i]
            r = rel[node.output]
            if r is None:
                continue
            if not record:
                rel[node.output] = None
            inputs = [values[j] for j in node.inputs]
            step = self.plan[i]
            if step is None:
                back = node.op.relevance(r, inputs, values[node.output], ctxs[i])
            else:
                rule, prep, nonnegative = step
                back = [rule.relevance(node.op, inputs[0], values[node.output], r, prep, nonnegative)]
            for j, rj in zip(node.inputs, back, strict=True):
                rel[j] = rj if rel[j] is None else rel[j] + rj
                if record:
                    edges[(i, j)] = rj
        return rel
