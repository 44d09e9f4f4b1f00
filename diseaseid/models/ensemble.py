"""A teacher made of several models: the mean of their logits (a normalised geometric mean of their
probabilities). Used as a distillation teacher (``diseaseid train --teacher A B``) and evaluated by
``diseaseid ensemble``; not served: the served teacher is the fastest model within 0.2 points of the best."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from diseaseid.models.checkpoint import load_model


class LogitEnsemble(nn.Module):
    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def load_ensemble(paths: Sequence[str | Path], device: str | torch.device = "cpu"
                  ) -> tuple[nn.Module, dict[str, Any]]:
    """(model, card) for one weights file, or a :class:`LogitEnsemble` of several with a card that names its
    members: ``version`` joins theirs with ``+``, so caches keyed by it change when any member does."""
    loaded = [load_model(p, device) for p in paths]
    if len(loaded) == 1:
        return loaded[0]
    cards = [c for _, c in loaded]
    tasks = {(c["task"], tuple(c["classes"])) for c in cards}
    if len(tasks) != 1:
        raise ValueError(f"ensemble members disagree on the task or classes: {sorted(tasks)}")
    card = {"task": cards[0]["task"], "classes": cards[0]["classes"], "arch": "ensemble",
            "version": "+".join(str(c.get("version")) for c in cards),
            "members": [{"file": str(p), "arch": c["arch"], "version": c.get("version"),
                         "accuracy": c.get("metrics", {}).get("validation", {}).get("accuracy")}
                        for p, c in zip(paths, cards)]}
    return LogitEnsemble([m for m, _ in loaded]).to(device).eval(), card
