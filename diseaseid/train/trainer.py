"""The training loop: AdamW, warm-up + cosine schedule, label smoothing, optional distillation, early stopping.

Data sits on the training device as uint8 (decoded once); batches are augmented there. bf16 autocast and
channels-last on CUDA; plain float32 on the CPU.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from diseaseid.data.augment import augment
from diseaseid.data.dataset import ImageFolder
from diseaseid.data.preprocess import IMAGENET_MEAN, IMAGENET_STD
from diseaseid.models import create_model, load_model
from diseaseid.tasks import get_task
from diseaseid.train.config import TrainConfig
from diseaseid.train.distill import distillation_loss
from diseaseid.train.metrics import classification_report, softmax, subject_report


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class DeviceImages:
    """uint8 NHWC images on a device, served as normalised float NCHW batches (optionally augmented)."""

    def __init__(self, images: np.ndarray, device: torch.device):
        self.data = torch.from_numpy(np.ascontiguousarray(images)).to(device)
        self.device = device
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.data)

    def batch(self, index: torch.Tensor, train_augment: bool = False) -> torch.Tensor:
        x = self.data[index].permute(0, 3, 1, 2).float().div_(255)
        if train_augment:
            x = augment(x)
        x = (x - self.mean) / self.std
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.inference_mode()
def predict_logits(model: nn.Module, images: DeviceImages | np.ndarray, batch_size: int = 128,
                   device: torch.device | None = None) -> np.ndarray:
    if not isinstance(images, DeviceImages):
        images = DeviceImages(images, device or next(model.parameters()).device)
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(images)), device=images.device)
        with autocast(images.device):
            out.append(model(images.batch(idx)).float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def evaluate_logits(logits: np.ndarray, ds: ImageFolder, temperature: float = 1.0) -> dict:
    probs = softmax(logits, temperature)
    report = classification_report(probs, ds.labels, ds.task.classes)
    if ds.task.subject_level:
        subj = subject_report(probs, ds.labels, ds.subjects, ds.task.classes)
        if subj:
            report.update(subj)
    return report


@dataclass
class FitResult:
    model: nn.Module
    best: dict
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    val_logits: np.ndarray | None = None


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def init_weights(model: nn.Module, cfg: TrainConfig) -> None:
    """Load ``cfg.init`` into ``model``; a different architecture, width or class list is refused."""
    start, card = load_model(cfg.init)
    if card["arch"] != cfg.model or list(card["classes"]) != list(get_task(cfg.task).classes):
        raise ValueError(f"--init {cfg.init} holds {card['task']}/{card['arch']}; this run trains "
                         f"{cfg.task}/{cfg.model}")
    try:
        model.load_state_dict(start.state_dict())
    except RuntimeError as exc:
        raise ValueError(f"--init {cfg.init} does not fit this model's shape: {exc}") from None


def fit(cfg: TrainConfig, train: ImageFolder, val: ImageFolder,
        on_epoch: Callable[[int, dict], None] | None = None, progress: bool = True) -> FitResult:
    """Train ``cfg.model`` on ``train``, select the epoch with the best ``cfg.select`` on ``val``.

    ``on_epoch(epoch, val_report)`` is called after each epoch (an Optuna pruner raises from there)."""
    task = get_task(cfg.task)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)

    model = create_model(cfg.model, num_classes=task.num_classes, **cfg.model_args()).to(device)
    if cfg.init:
        init_weights(model, cfg)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    tr_images, va_images = DeviceImages(train.images, device), DeviceImages(val.images, device)
    y_train = torch.from_numpy(train.labels).to(device)

    teacher, teacher_logits = None, None
    if cfg.teacher:
        teacher, _ = load_model(cfg.teacher, device)
        if cfg.kd_cache:
            teacher_logits = torch.from_numpy(predict_logits(teacher, tr_images)).to(device)

    class_weights = None
    if cfg.balanced:
        counts = np.bincount(train.labels, minlength=task.num_classes).astype(np.float64)
        w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / task.num_classes, 0.0)
        class_weights = torch.tensor(w, dtype=torch.float32, device=device)

    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, foreach=True)
    steps_per_epoch = max(1, len(train) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    history, best, best_epoch, best_state, best_logits = [], None, -1, None, None
    start, step = time.time(), 0
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(train), generator=gen).to(device)
        running, seen = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"{cfg.model} epoch {epoch + 1}/{cfg.epochs}",
                   disable=None if progress else True, leave=False)
        for b in bar:
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, warmup, cfg.lr)
            x, y = tr_images.batch(idx, cfg.augment), y_train[idx]
            with autocast(device):
                logits = model(x)
                if teacher is not None:
                    if teacher_logits is not None:
                        t_logits = teacher_logits[idx]
                    else:
                        with torch.no_grad():
                            t_logits = teacher(x)
                    loss = distillation_loss(logits, t_logits, y, cfg.kd_temperature, cfg.w_soft, cfg.w_ce,
                                             cfg.label_smoothing, class_weights)
                else:
                    loss = F.cross_entropy(logits.float(), y, weight=class_weights,
                                           label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            running += loss.item() * len(idx)
            seen += len(idx)
            bar.set_postfix(loss=f"{running / seen:.4f}")
        val_logits = predict_logits(model, va_images)
        report = evaluate_logits(val_logits, val)
        row = {"epoch": epoch + 1, "train_loss": running / max(seen, 1), "seconds": time.time() - start,
               **{k: report[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "ece", "nll")},
               **{k: report[k] for k in ("subject_accuracy", "subject_balanced_accuracy") if k in report}}
        history.append(row)
        if progress:
            print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                  flush=True)
        score = report.get(cfg.select, report["macro_f1"])
        if best is None or score > best.get(cfg.select, best["macro_f1"]):
            best, best_epoch, best_logits = report, epoch + 1, val_logits
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if on_epoch is not None:
            on_epoch(epoch, report)
        if epoch + 1 - best_epoch >= cfg.patience:
            if progress:
                print(f"early stop: no {cfg.select} improvement for {cfg.patience} epochs")
            break
    model.load_state_dict(best_state)
    return FitResult(model.eval(), best, best_epoch, history, time.time() - start, best_logits)
