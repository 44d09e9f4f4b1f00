"""Subject-level classifier over all of a subject's slices: gated attention multiple-instance learning
(Ilse, Tomczak and Welling 2018, "Attention-based Deep Multiple Instance Learning").

Slices are embedded by a frozen backbone (the slice teacher); each embedding is joined with the slice's
relative position in the stack (0 = lowest, 1 = highest), since which slices show atrophy depends on height.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from diseaseid.models._registry import register_model


def position_encoding(pos: torch.Tensor, dims: int = 8) -> torch.Tensor:
    """Sinusoidal features of a relative position in [0, 1]: ... x dims."""
    freqs = torch.arange(dims // 2, device=pos.device, dtype=torch.float32)
    angles = pos.unsqueeze(-1).float() * math.pi * (2.0 ** freqs)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


def slice_features(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A slice's embedding for the MIL head: the backbone's pooled penultimate features (N x F). Training
    (diseaseid.train.mil) and serving (diseaseid.serving.study) both call this, so they cannot drift apart."""
    return backbone.forward_head(backbone.forward_features(x), pre_logits=True)


class AttentionMIL(nn.Module):
    def __init__(self, in_features: int = 1280, hidden: int = 64, num_classes: int = 4, dropout: float = 0.5,
                 pos_dims: int = 8):
        super().__init__()
        self.pos_dims = pos_dims
        self.embed = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features + pos_dims, hidden), nn.ReLU())
        self.attn_v = nn.Linear(hidden, hidden)
        self.attn_u = nn.Linear(hidden, hidden)
        self.attn_w = nn.Linear(hidden, 1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, feats: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None = None,
                return_attention: bool = False):
        """feats: B x N x F slice embeddings, pos: B x N relative positions, mask: B x N (True = real slice)."""
        h = self.embed(torch.cat([feats, position_encoding(pos, self.pos_dims)], dim=-1))
        a = self.attn_w(torch.tanh(self.attn_v(h)) * torch.sigmoid(self.attn_u(h))).squeeze(-1)
        if mask is not None:
            a = a.masked_fill(~mask, float("-inf"))
        a = torch.softmax(a, dim=1)
        logits = self.classifier((a.unsqueeze(-1) * h).sum(1))
        return (logits, a) if return_attention else logits


@register_model(kind="bag")
def attention_mil(num_classes: int = 4, in_features: int = 1280, hidden: int = 64, dropout: float = 0.5,
                  **kwargs) -> AttentionMIL:
    return AttentionMIL(in_features, hidden, num_classes, dropout, **kwargs)
