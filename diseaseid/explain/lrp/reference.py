"""A slow, literal LRP: for each layer, from the top, Zennit's general form of the rule with autograd.

    z_p = layer_p(input_modifier_p(a))          (with the part's modified parameters)
    s_p = gradient_mapper(R, z)_p
    c_p = d(sum_k z_p,k s_p,k) / d a_p          (autograd: the transposed layer)
    R_in = reducer(a, c)

Non-linear operations use autograd too: activations pass relevance, max-pooling routes it by its gradient,
sums and average pooling split it by contribution. It exists to test the fast propagation
(``propagate.py``) on models where no third-party implementation is right (residual additions, ReLU6).
"""
from __future__ import annotations

import torch

from diseaseid.explain.lrp.propagate import LRP, output_relevance, select_targets
from diseaseid.explain.ops import Activation, Add, AvgPool, Linear, divide_stable

Tensor = torch.Tensor


def _linear(node, rule, a: Tensor, r: Tensor) -> Tensor:
    lit = rule.literal(node.op)
    w, b = node.op.weight, node.op.bias
    inputs, outputs = [], []
    for in_mod, param_mod in zip(lit.input_modifiers, lit.param_modifiers, strict=False):
        a_p = in_mod(a).detach().requires_grad_()
        outputs.append(node.op.fwd(a_p, *param_mod(w, b)))
        inputs.append(a_p)
    grads = torch.autograd.grad(outputs, inputs, grad_outputs=lit.gradient_mapper(r, outputs),
                                allow_unused=True)
    grads = [torch.zeros_like(i) if g is None else g for i, g in zip(inputs, grads, strict=False)]
    return lit.reducer([i.detach() for i in inputs], grads)


def _fixed(node, inputs: list[Tensor], out: Tensor, r: Tensor) -> list[Tensor]:
    if isinstance(node.op, Activation):
        return [r]
    if isinstance(node.op, (Add, AvgPool)):
        s = divide_stable(r, out, 1e-6)
        leaves = [i.detach().requires_grad_() for i in inputs]
        z, _ = node.op.forward(*leaves)
        grads = torch.autograd.grad(z, leaves, grad_outputs=s)
        return [leaf.detach() * g for leaf, g in zip(leaves, grads, strict=False)]
    leaves = [i.detach().requires_grad_() for i in inputs]  # max-pooling, flatten: the gradient itself
    z, _ = node.op.forward(*leaves)
    return list(torch.autograd.grad(z, leaves, grad_outputs=r))


def reference_relevance(lrp: LRP, x: Tensor, target=None) -> tuple[Tensor, Tensor]:
    """Input relevance and targets computed layer by layer with autograd, using ``lrp``'s graph and rules."""
    graph = lrp.graph
    with torch.no_grad():
        values, _ = graph.run(x)
    logits = values[graph.output]
    targets = select_targets(logits, target)
    rel: list[Tensor | None] = [None] * graph.num_values
    rel[graph.output] = output_relevance(logits, targets)
    with torch.enable_grad():
        for node, step in zip(reversed(graph.nodes), reversed(lrp.plan), strict=False):
            r = rel[node.output]
            if r is None:
                continue
            inputs = [values[j] for j in node.inputs]
            if isinstance(node.op, Linear):
                back = [_linear(node, step[0], inputs[0], r)]
            else:
                back = _fixed(node, inputs, values[node.output], r)
            for j, rj in zip(node.inputs, back, strict=False):
                rel[j] = rj.detach() if rel[j] is None else rel[j] + rj.detach()
    return rel[0], targets
