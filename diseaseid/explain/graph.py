"""A model as a flat list of operations (``ops.Op``), traced once with ``torch.fx`` and run without autograd.

The explainers walk this list forward (keeping every intermediate value) and then backward, applying a rule
per operation. Tracing makes residual additions visible, which hook-based tools miss (they see modules, not
the ``+`` in a block's ``forward``). Folding BatchNorm into the preceding linear operation happens here on
copies of the weights, so the model itself is never touched (a server may be using it from another thread).
"""
from __future__ import annotations

import operator
import weakref
from dataclasses import dataclass, field, replace

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from diseaseid.explain.ops import Activation, Add, AvgPool, Flatten, Gate, Linear, MaxPool, Median, Op
from diseaseid.memory import keep_freed_memory

Tensor = torch.Tensor


class UnsupportedModelError(TypeError):
    """The model contains an operation the explainers do not know how to propagate through."""


@dataclass(eq=False)
class Node:
    op: Op
    inputs: tuple[int, ...]  # indices of the values it reads
    output: int  # index of the value it writes
    name: str  # the module (or function) it came from
    modules: tuple[str, ...] = ()  # every module merged into it (a convolution and its BatchNorm)


@dataclass(eq=False)
class Graph:
    nodes: list[Node]
    num_values: int
    output: int
    # module qualified name -> index of the value holding that module's output
    module_outputs: dict[str, int] = field(default_factory=dict)
    folded: bool = False

    @property
    def linear_nodes(self) -> list[Node]:
        return [n for n in self.nodes if isinstance(n.op, Linear)]

    def producers(self) -> dict[int, Node]:
        return {n.output: n for n in self.nodes}

    def consumers(self) -> dict[int, list[Node]]:
        users: dict[int, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                users.setdefault(i, []).append(n)
        return users

    def nonnegative_values(self) -> set[int]:
        """Values that are >= 0 for any input (rules use cheaper formulas on them)."""
        known: set[int] = set()
        for n in self.nodes:
            if isinstance(n.op, Activation):
                known.add(n.output)
            elif isinstance(n.op, (MaxPool, AvgPool, Flatten, Add)) and all(i in known for i in n.inputs):
                known.add(n.output)
        return known

    def value_of(self, module_name: str) -> int:
        try:
            index = self.module_outputs[module_name]
        except KeyError:
            raise KeyError(f"module {module_name!r} is not in the traced graph") from None
        if index != 0 and index not in self.producers():
            raise KeyError(f"the output of {module_name!r} was folded away (BatchNorm merge); trace unfolded")
        return index

    def run(self, x: Tensor) -> tuple[list[Tensor | None], list[object]]:
        """Forward pass keeping every value and each operation's context (e.g. max-pooling indices)."""
        values: list[Tensor | None] = [None] * self.num_values
        ctxs: list[object] = [None] * len(self.nodes)
        if x.ndim == 4:
            # channels-last: oneDNN's preferred layout; max-pooling in it is ten times faster on the CPU
            x = x.contiguous(memory_format=torch.channels_last)
        values[0] = x
        for i, node in enumerate(self.nodes):
            values[node.output], ctxs[i] = node.op.forward(*[values[j] for j in node.inputs])
        return values, ctxs


# ---- tracing ----


class _Tracer(fx.Tracer):
    """BatchNorm subclasses (timm's BatchNormAct2d: BN, then dropout, then activation) stay whole, and so do
    gates (modules with a ``gate_mask``, such as the convnets' head gate) and convolutions that filter their input
    (``input_median``)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return (isinstance(m, nn.modules.batchnorm._BatchNorm) or hasattr(m, "gate_mask")
                or getattr(m, "input_median", False) is True and isinstance(m, nn.Conv2d)
                or super().is_leaf_module(m, qualname))


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def batchnorm_affine(bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """An eval-mode BatchNorm as ``scale * x + shift``."""
    scale = torch.rsqrt(bn.running_var.detach() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    shift = -bn.running_mean.detach() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach()
    return scale, shift


def fold_affine(weight: Tensor, bias: Tensor | None, scale: Tensor, shift: Tensor) -> tuple[Tensor, Tensor]:
    """Weights of ``affine(linear(x))`` as one linear map: ``W' = scale W``, ``b' = scale b + shift``."""
    shape = (-1,) + (1,) * (weight.ndim - 1)
    new_bias = shift if bias is None else bias * scale + shift
    return weight * scale.view(shape), new_bias


def _activation(m: nn.Module) -> str | None:
    """'relu', 'relu6', 'identity', or None when not a supported activation."""
    if isinstance(m, (nn.Identity, nn.Dropout, nn.Dropout2d)):
        return "identity"
    if isinstance(m, nn.ReLU):
        return "relu"
    if isinstance(m, nn.ReLU6) or (isinstance(m, nn.Hardtanh) and (m.min_val, m.max_val) == (0.0, 6.0)):
        return "relu6"
    return None


def _module_op(m: nn.Module, name: str) -> list[Op | str]:
    """The operations one leaf module becomes ('identity' for a pass-through)."""
    if hasattr(m, "gate_mask"):
        return [Gate(m.gate_mask)]
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise UnsupportedModelError(f"{name}: only explicit zero padding is supported")
        bias = None if m.bias is None else m.bias.detach()
        conv = Linear("conv", m.weight.detach(), bias, _pair(m.stride), _pair(m.padding), _pair(m.dilation),
                      m.groups)
        # a convolution that reads the median of its input (diseaseid.models.median.MedianConv2d): the filter,
        # then the convolution
        if getattr(m, "input_median", False):
            return [Median(float(getattr(m, "input_smooth", 0.0))), conv]
        return [conv]
    if isinstance(m, nn.Linear):
        return [Linear("dense", m.weight.detach(), None if m.bias is None else m.bias.detach())]
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        ops: list[Op | str] = [Linear("affine", *batchnorm_affine(m))]
        for extra in ("drop", "act"):  # timm's BatchNormAct2d
            sub = getattr(m, extra, None)
            if sub is not None:
                kind = _activation(sub)
                if kind is None:
                    raise UnsupportedModelError(f"{name}.{extra}: unsupported {type(sub).__name__}")
                if kind != "identity":
                    ops.append(Activation(kind))
        return ops
    kind = _activation(m)
    if kind == "identity":
        return ["identity"]
    if kind is not None:
        return [Activation(kind)]
    if isinstance(m, nn.MaxPool2d):
        if m.return_indices:
            raise UnsupportedModelError(f"{name}: max-pooling that returns indices")
        stride = m.stride if m.stride is not None else m.kernel_size
        return [MaxPool(_pair(m.kernel_size), _pair(stride), _pair(m.padding), _pair(m.dilation),
                        m.ceil_mode)]
    if isinstance(m, nn.AvgPool2d):
        if m.divisor_override is not None:
            raise UnsupportedModelError(f"{name}: average pooling with divisor_override")
        stride = m.stride if m.stride is not None else m.kernel_size
        return [AvgPool(_pair(m.kernel_size), _pair(stride), _pair(m.padding), m.ceil_mode,
                        m.count_include_pad)]
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return [AvgPool(output_size=_pair(m.output_size))]
    if isinstance(m, nn.Flatten):
        return [Flatten(m.start_dim, m.end_dim)]
    raise UnsupportedModelError(f"{name}: no propagation rule for module type {type(m).__name__}")


def _function_op(node: fx.Node) -> Op | str:
    target, args, kwargs = node.target, node.args, node.kwargs
    tensor_args = [a for a in args if isinstance(a, fx.Node)]
    method = target if node.op == "call_method" else None
    is_add = target in (operator.add, operator.iadd, torch.add) or method == "add"
    if is_add and len(tensor_args) == 2 and len(args) == 2 and kwargs.get("alpha", 1) == 1:
        return Add()
    if target in (torch.flatten,) or method == "flatten":
        start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
        end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
        return Flatten(start, end)
    if target in (F.dropout, F.dropout2d, torch.dropout) or method == "contiguous":
        return "identity"
    if target in (F.relu, torch.relu) or method == "relu":
        return Activation("relu")
    if target is F.relu6:
        return Activation("relu6")
    if target is F.adaptive_avg_pool2d:
        size = args[1] if len(args) > 1 else kwargs["output_size"]
        return AvgPool(output_size=_pair(size))
    raise UnsupportedModelError(f"{node.name}: no propagation rule for {node.op} {target}")


def trace(model: nn.Module) -> Graph:
    """The model (in eval mode semantics: dropout off, BatchNorm with running statistics) as a Graph."""
    tracer = _Tracer()
    fx_graph = tracer.trace(model)
    value_of: dict[fx.Node, int] = {}
    nodes: list[Node] = []
    module_outputs: dict[str, int] = {}
    count = 0
    output = None
    for fn in fx_graph.nodes:
        if fn.op == "placeholder":
            if count:
                raise UnsupportedModelError("models with more than one input are not supported")
            value_of[fn] = 0
            count = 1
            continue
        if fn.op == "output":
            output = value_of[fn.args[0]]
            continue
        if fn.op == "get_attr":
            raise UnsupportedModelError(f"{fn.name}: tensors read from attributes inside forward")
        if fn.op == "call_module":
            ops = _module_op(model.get_submodule(fn.target), fn.target)
            name = fn.target
        else:
            ops = [_function_op(fn)]
            name = fn.name
        inputs = tuple(value_of[a] for a in fn.args if isinstance(a, fx.Node))
        for op in ops:
            if op == "identity":
                value_of[fn] = inputs[0]
                continue
            nodes.append(Node(op, inputs, count, name, (name,) if fn.op == "call_module" else ()))
            inputs = (count,)
            value_of[fn] = count
            count += 1
        for scope in fn.meta.get("nn_module_stack", {}):
            module_outputs[scope] = value_of[fn]
        if fn.op == "call_module":
            module_outputs[fn.target] = value_of[fn]
    if output is None:
        raise UnsupportedModelError("the traced model has no output")
    return Graph(nodes, count, output, module_outputs)


def fold_batchnorm(graph: Graph) -> Graph:
    """A new graph where every affine (BatchNorm) node that directly follows a linear node, and is that node's
    only reader, is merged into it. The logits are unchanged up to rounding."""
    producers, users = graph.producers(), graph.consumers()
    merged: dict[int, Node] = {}  # id of the linear node -> its replacement
    dropped: set[int] = set()
    for node in graph.nodes:
        if not (isinstance(node.op, Linear) and node.op.kind == "affine"):
            continue
        source = producers.get(node.inputs[0])
        if source is None or id(source) in merged or not isinstance(source.op, Linear):
            continue
        if source.op.kind == "affine" or len(users.get(source.output, [])) != 1:
            continue
        weight, bias = fold_affine(source.op.weight, source.op.bias, node.op.weight, node.op.bias)
        merged[id(source)] = Node(replace(source.op, weight=weight, bias=bias), source.inputs, node.output,
                                  source.name, source.modules + node.modules)
        dropped.add(id(node))
    nodes = [merged.get(id(n), n) for n in graph.nodes if id(n) not in dropped]
    return Graph(nodes, graph.num_values, graph.output, dict(graph.module_outputs), folded=True)


# ---- per-model cache ----


def model_key(model: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced, moved or modified in place. Read from each module's own
    parameter and buffer dicts: ``parameters()`` and ``buffers()`` build prefixed names and a set of seen tensors
    on the way, 0.76 against 0.21 ms for the tumor student's 206 tensors (quiet machine, /tmp script, 200 calls),
    and an explanation asks three times. A tensor shared by two modules is listed twice: the same every call."""
    return tuple((t.data_ptr(), t._version, t.dtype) for module in model.modules()
                 for tensors in (module._parameters, module._buffers) for t in tensors.values() if t is not None)


_CACHE: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()


def cached(model: nn.Module, key: object, build):
    """``build()`` once per model, key and weights; rebuilt when the weights change."""
    entry = _CACHE.setdefault(model, {})
    version = model_key(model)
    hit = entry.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    value = build()
    entry[key] = (version, value)
    return value


def compile_graph(model: nn.Module, fold: bool = True) -> Graph:
    """The traced (and by default BatchNorm-folded) graph of a model, cached per model and weights."""
    keep_freed_memory()

    def build() -> Graph:
        with torch.no_grad():
            graph = trace(model)
            return fold_batchnorm(graph) if fold else graph
    return cached(model, ("graph", fold), build)


def backprop(graph: Graph, values: list, ctxs: list, seed: Tensor, upto: int = 0) -> Tensor:
    """The plain gradient of ``(output * seed).sum()`` with respect to value ``upto`` (default: the input)."""
    grads: list[Tensor | None] = [None] * graph.num_values
    grads[graph.output] = seed
    for i in range(len(graph.nodes) - 1, -1, -1):
        node = graph.nodes[i]
        if node.output == upto:  # every reader of ``upto`` comes later in the list: its gradient is complete
            break
        g = grads[node.output]
        if g is None:
            continue
        grads[node.output] = None
        back = node.op.gradient(g, [values[j] for j in node.inputs], values[node.output], ctxs[i])
        for j, gj in zip(node.inputs, back, strict=False):
            grads[j] = gj if grads[j] is None else grads[j] + gj
    if grads[upto] is None:
        raise ValueError("the output does not depend on the requested value")
    return grads[upto]
