"""Model registry: ``@register_model`` on a builder function, ``create_model(name, **kwargs)`` to build.

Models are of a kind: ``image`` models take N x 3 x 224 x 224 slices; ``bag`` models take a subject's bag of
slice embeddings (see ``mil.py``)."""
from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_KINDS: dict[str, str] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, kind: str = "image"):
    def add(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[f.__name__] = f
        _KINDS[f.__name__] = kind
        return f

    return add(fn) if fn is not None else add


def list_models(kind: str | None = "image") -> list[str]:
    return sorted(n for n in _MODELS if kind is None or _KINDS[n] == kind)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; keyword arguments that are ``None`` keep the builder's default."""
    try:
        builder = _MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models(None))}") from None
    model = builder(**{k: v for k, v in kwargs.items() if v is not None})
    model.arch_name = name
    return model
