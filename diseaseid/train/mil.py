"""Training the subject-level MIL head on frozen slice embeddings (see diseaseid.models.mil), its mean-of-slices
baseline and its model card (``diseaseid train-mil``)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from diseaseid.data.dataset import ImageFolder
from diseaseid.models import create_model
from diseaseid.models.mil import slice_features
from diseaseid.train.metrics import classification_report, softmax, subject_report
from diseaseid.train.trainer import DeviceImages, autocast, predict_logits


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


def load_backbone(task: str, backbone: str | None):
    """The slice model whose embeddings the head reads, and the file it came from: ``backbone`` weights, the
    shipped teacher (None), or Lite0's ImageNet weights without fine-tuning (``imagenet``)."""
    from diseaseid.serving.predictor import Predictor, shipped_weights
    from diseaseid.tasks import TASKS

    if backbone == "imagenet":
        net = create_model("lite0", num_classes=1000, pretrained=True).eval()
        return Predictor(net, {"task": task, "arch": "lite0", "role": "imagenet", "version": "imagenet",
                               "classes": list(TASKS[task].classes)}), Path("imagenet-lite0")
    path = Path(backbone) if backbone else shipped_weights(task, "teacher")
    return Predictor.from_weights(path), path


def mean_of_slices_baseline(backbone, val: ImageFolder) -> tuple[dict, dict]:
    """The backbone's own slice predictions, averaged per subject: (subject report, slice report); empty for
    an ImageNet backbone, which has no classes of ours."""
    if backbone.card.get("role") == "imagenet":
        return {}, {}
    probs = softmax(predict_logits(backbone.model, val.images), backbone.temperature)
    classes = val.task.classes
    return subject_report(probs, val.labels, val.subjects, classes), classification_report(probs, val.labels, classes)


def train_seeds(tr_bags: dict, va_bags: dict, classes, seeds: int, epochs: int, lr: float, weight_decay: float,
                hidden: int, dropout: float, class_weighting: str) -> list[tuple]:
    """One head per seed ``0 .. seeds - 1``: (validation balanced accuracy, seed, model, best, history) in seed
    order."""
    runs = []
    for seed in range(seeds):
        model, best, history = train_mil(tr_bags, va_bags, classes, epochs, lr, weight_decay, hidden, dropout,
                                         seed=seed, class_weighting=class_weighting)
        runs.append((best["balanced_accuracy"], seed, model, best, history))
    return runs


def comparison(baseline: dict, slice_base: dict, best: dict, scores: np.ndarray, seeds: int) -> dict:
    """The card's ``metrics.comparison``: the mean-of-slices baseline beside the head (seed 0 and all
    ``seeds``, whose balanced accuracies are ``scores``)."""
    return {
        "baseline_mean_of_slices": {"subject_balanced_accuracy": baseline.get("subject_balanced_accuracy"),
                                    "subject_accuracy": baseline.get("subject_accuracy"),
                                    "slice_balanced_accuracy": slice_base.get("balanced_accuracy")},
        "mil": {"subject_balanced_accuracy_seed0": best["balanced_accuracy"],
                "subject_accuracy_seed0": best["accuracy"],
                "subject_balanced_accuracy_mean_over_seeds": float(scores.mean()),
                "subject_balanced_accuracy_std_over_seeds": float(scores.std()),
                "seeds": seeds, "epochs": best["epoch"],
                "note": "fixed epochs, last epoch kept, seed 0 shipped: no selection on these subjects"},
    }


def mil_card(task: str, training: dict, seed: int, in_features: int, hidden: int, dropout: float, classes,
             backbone, backbone_path, best: dict, history: list, summary: dict, split: dict) -> dict:
    """The head's model card; ``training``: the options it was trained with (the command's, as given)."""
    from diseaseid.models.checkpoint import file_sha256

    return {"task": task, "role": "mil", "arch": "attention_mil",
            "arch_args": {"in_features": in_features, "hidden": hidden, "dropout": dropout},
            "classes": list(classes), "backbone": {"file": backbone_path.name, "version": backbone.version,
                                                   "sha256": file_sha256(backbone_path)
                                                   if backbone_path.exists() else None},
            "training": training | {"seed": seed},
            "metrics": {"validation": {k: best[k] for k in ("accuracy", "balanced_accuracy", "macro_f1",
                                                            "confusion_matrix", "per_class")},
                        "comparison": summary},
            "history": history, "split": {"seed": split.get("seed"), "groups": split.get("groups")},
            "data_fingerprint": split.get("data_fingerprint")}
