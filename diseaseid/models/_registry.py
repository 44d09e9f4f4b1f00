"""Model registry: ``@register_model`` on a builder function, ``create_model(name, **kwargs)`` to build."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; keyword arguments that are ``None`` keep the builder's default."""
    try:
        builder = _MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}") from None
    model = builder(**{k: v for k, v in kwargs.items() if v is not None})
    model.arch_name = name
    return model
