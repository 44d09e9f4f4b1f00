"""Training the subject-level MIL head on frozen slice embeddings (see diseaseid.models.mil)."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from diseaseid.data.dataset import ImageFolder
from diseaseid.models import create_model
from diseaseid.models.mil import slice_features
from diseaseid.train.metrics import classification_report, softmax
from diseaseid.train.trainer import DeviceImages, autocast


@torch.inference_mode()
def slice_embeddings(backbone: nn.Module, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Pooled penultimate features (``forward_head(..., pre_logits=True)``) for every slice."""
    device = next(backbone.parameters()).device
    data = DeviceImages(images, device)
    backbone.eval()
    out = []
    for s in range(0, len(data), batch_size):
        idx = torch.arange(s, min(s + batch_size, len(data)), device=device)
        with autocast(device):
            out.append(slice_features(backbone, data.batch(idx)).float().cpu())
    return torch.cat(out).numpy()


def subject_bags(ds: ImageFolder, feats: np.ndarray) -> dict:
    """Per subject (``ImageFolder.subject_slices``): embeddings ordered by slice position, relative positions in
    [0, 1], and the label."""
    bags = {}
    for s, idx in ds.subject_slices().items():
        ranks = ds.slice_ranks[idx].astype(np.float32)
        pos = ranks / max(ranks.max(), 1) if (ranks >= 0).all() else np.linspace(0, 1, len(idx), dtype=np.float32)
        bags[s] = (feats[idx], pos, ds.subject_label(idx))
    return bags


def class_weights(y: torch.Tensor, k: int, mode: str = "balanced") -> torch.Tensor | None:
    """Loss weights per class: ``balanced`` (inverse frequency), ``sqrt`` (its square root: a class of 2 subjects
    is not worth 30 of another), or ``none``."""
    if mode == "none":
        return None
    counts = torch.bincount(y, minlength=k).float()
    w = torch.where(counts > 0, counts.sum() / counts.clamp(min=1) / k, torch.zeros_like(counts))
    if mode == "sqrt":
        w = w.sqrt()
    elif mode != "balanced":
        raise ValueError(f"unknown class weighting {mode!r}")
    return w


def stack_bags(bags: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    n = max(len(b[0]) for b in bags)
    f = torch.zeros(len(bags), n, bags[0][0].shape[1])
    p = torch.zeros(len(bags), n)
    m = torch.zeros(len(bags), n, dtype=torch.bool)
    for i, (feat, pos, _) in enumerate(bags):
        f[i, : len(feat)] = torch.from_numpy(feat)
        p[i, : len(pos)] = torch.from_numpy(pos)
        m[i, : len(feat)] = True
    return f, p, m, torch.tensor([b[2] for b in bags])


def train_mil(train_bags: dict, val_bags: dict, classes, epochs: int = 300, lr: float = 1e-3,
              weight_decay: float = 1e-2, hidden: int = 64, dropout: float = 0.5, slice_dropout: float = 0.3,
              seed: int = 0, select_on_val: bool = False, class_weighting: str = "balanced",
              ) -> tuple[nn.Module, dict, list[dict]]:
    """Full-batch training (a few hundred subjects) with a class-balanced loss. ``slice_dropout`` hides a random
    share of each bag's slices per step (regularisation).

    By default the model after the last epoch is kept, so the validation figures are an honest estimate;
    ``select_on_val`` keeps the epoch with the best validation subject-level balanced accuracy instead
    (optimistic on that same validation set)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    tr = list(train_bags.values())
    f, p, m, y = stack_bags(tr)
    vf, vp, vm, vy = stack_bags(list(val_bags.values()))
    k = len(classes)
    model = create_model("attention_mil", num_classes=k, in_features=f.shape[-1], hidden=hidden, dropout=dropout)
    weights = class_weights(y, k, class_weighting)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    best, best_state, history = None, None, []
    start = time.time()
    for epoch in range(epochs):
        model.train()
        keep = m & (torch.rand(m.shape, generator=gen) > slice_dropout)
        keep[:, 0] |= ~keep.any(1)  # never an empty bag
        loss = F.cross_entropy(model(f, p, keep), y, weight=weights, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (epoch + 1) % 5 == 0:
            model.eval()
            with torch.no_grad():
                logits = model(vf, vp, vm).numpy()
            rep = classification_report(softmax(logits), vy.numpy(), classes)
            history.append({"epoch": epoch + 1, "loss": loss.item(), "subject_balanced_accuracy":
                            rep["balanced_accuracy"], "subject_accuracy": rep["accuracy"]})
            last = epoch + 1 == epochs - (epochs % 5)
            if best is None or (select_on_val and rep["balanced_accuracy"] > best["balanced_accuracy"]) or (
                    not select_on_val and last):
                best = {**rep, "epoch": epoch + 1, "val_logits": logits}
                best_state = {kk: v.clone() for kk, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    best["seconds"] = time.time() - start
    return model.eval(), best, history
