"""Subject-level heads that pool a study's slice embeddings, served by diseaseid.serving.study with the same
call as the attention-MIL head and fitted by diseaseid.train.subject_heads:

- ``linear`` / ``ordinal``: the slices are split into ``slabs`` runs of consecutive slices (lowest first), each
  run is averaged, and a linear or ordinal (cumulative-link) layer reads the concatenated slab means;
- ``slices``: a linear classifier reads every slice, and the subject's probabilities are the normalised
  geometric mean of the slices' (the mean of their log-probabilities).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from diseaseid.models._registry import register_model


class PooledHead(nn.Module):
    def __init__(self, in_features: int = 1280, num_classes: int = 4, slabs: int = 1, kind: str = "linear"):
        super().__init__()
        if kind not in ("linear", "ordinal", "slices"):
            raise ValueError(f"kind must be linear, ordinal or slices, not {kind!r}")
        self.slabs, self.kind, self.num_classes = slabs, kind, num_classes
        width = in_features * slabs
        if kind == "slices":
            self.linear = nn.Linear(in_features, num_classes)
        elif kind == "linear":
            self.linear = nn.Linear(width, num_classes)
        else:  # P(y > k) = sigmoid(w.x - t_k), thresholds increasing
            self.weight = nn.Parameter(torch.zeros(width))
            self.thresholds = nn.Parameter(torch.zeros(num_classes - 1))

    def pool(self, feats: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """B x N x F -> B x (slabs * F): the mean of each run of consecutive (unmasked) slices, split as
        numpy's array_split splits (training uses that). Fewer slices than slabs: the nearest slice fills each."""
        out = []
        for b in range(feats.shape[0]):
            f = feats[b] if mask is None else feats[b][mask[b]]
            if len(f) >= self.slabs:
                out.append(torch.cat([part.mean(0) for part in torch.tensor_split(f, self.slabs)]))
            else:
                idx = torch.linspace(0, len(f) - 1, self.slabs, device=f.device).round().long()
                out.append(f[idx].reshape(-1))
        return torch.stack(out)

    def forward(self, feats: torch.Tensor, pos: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                return_attention: bool = False):
        """Log-probabilities (B x C): a softmax of them gives the head's probabilities. ``pos`` is unused
        (slices are taken in stack order); the "attention" is each slice's share of the pooled input."""
        if self.kind == "slices":
            per_slice = torch.log_softmax(self.linear(feats), dim=-1)  # B x N x C
            if mask is None:
                mean = per_slice.mean(1)
            else:
                m = mask.float().unsqueeze(-1)
                mean = (per_slice * m).sum(1) / m.sum(1)
            logits = torch.log_softmax(mean, dim=1)
        elif self.kind == "linear":
            x = self.pool(feats, mask)
            logits = torch.log_softmax(self.linear(x), dim=1)
        else:
            x = self.pool(feats, mask)
            above = torch.sigmoid((x @ self.weight)[:, None] - self.thresholds[None])
            ones, zeros = torch.ones_like(above[:, :1]), torch.zeros_like(above[:, :1])
            cum = torch.cat([ones, above, zeros], 1)
            logits = torch.log((cum[:, :-1] - cum[:, 1:]).clamp_min(1e-9))
        if not return_attention:
            return logits
        if self.kind == "slices":
            # Each slice's support for the subject's answer: a softmax over the slices of their
            # log-probability of the answered class (sums to 1; the slice surest of it weighs most).
            label = logits.argmax(1)
            support = per_slice.gather(2, label[:, None, None].expand(-1, per_slice.shape[1], 1)).squeeze(2)
            if mask is not None:
                support = support.masked_fill(~mask, float("-inf"))
            return logits, torch.softmax(support, dim=1)
        n = feats.shape[1]
        weights = torch.full(feats.shape[:2], 1.0 / n, device=feats.device)
        if mask is not None:
            weights = mask.float() / mask.float().sum(1, keepdim=True)
        return logits, weights


@register_model(kind="bag")
def pooled_head(num_classes: int = 4, in_features: int = 1280, slabs: int = 1, kind: str = "linear",
                **kwargs) -> PooledHead:
    return PooledHead(in_features, num_classes, slabs, kind)
