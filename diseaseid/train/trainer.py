"""The training loop: AdamW, warm-up + cosine schedule, label smoothing, optional distillation, early stopping.

Data sits on the training device as uint8 (decoded once); batches are augmented there. bf16 autocast and
channels-last on CUDA; float32 (channels-last for the EfficientNets) on the CPU. A checkpoint after every epoch
(``checkpoint.pt`` in the run folder) lets a long run stop and resume where it left off, bit for bit.
"""
from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from diseaseid.data.augment import AugmentConfig, apply_params, augment, sample_params
from diseaseid.data.dataset import ImageFolder
from diseaseid.data.preprocess import IMAGENET_MEAN, IMAGENET_STD
from diseaseid.models import create_model, load_ensemble, load_model
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

    def __init__(self, images: np.ndarray, device: torch.device, channels_last: bool | None = None,
                 augment_config: AugmentConfig | None = None, copies: np.ndarray | None = None,
                 copies_p: float = 0.0):
        self.augment_config = augment_config or AugmentConfig()
        self.data = torch.from_numpy(np.ascontiguousarray(images)).to(device)
        # other decodes of the same slices (K x N x H x W x C: diseaseid.data.scan_noise); an augmented batch
        # takes a share ``copies_p`` of its images from a random one of them
        self.copies = None if copies is None else torch.from_numpy(np.ascontiguousarray(copies)).to(device)
        if self.copies is not None and self.copies.shape[1:] != self.data.shape:
            raise ValueError(f"copies of shape {tuple(self.copies.shape)} do not match images "
                             f"{tuple(self.data.shape)}")
        self.copies_p = copies_p
        self.device = device
        self.channels_last = device.type == "cuda" if channels_last is None else channels_last
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.data)

    def batch(self, index: torch.Tensor, train_augment: bool = False, views: torch.Tensor | None = None,
              size: int | None = None) -> torch.Tensor:
        """Normalised float batch of ``index``; ``views`` (rows of :func:`sample_params`) applies those
        views, else ``train_augment`` draws random ones; ``size`` resizes (progressive resizing)."""
        x = self._pick(index) if train_augment and views is None else self.data[index]
        x = x.permute(0, 3, 1, 2).float().div_(255)
        if views is not None:
            x = apply_params(x, views)
        elif train_augment:
            x = augment(x, self.augment_config)
        if size is not None and size != x.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _pick(self, index: torch.Tensor) -> torch.Tensor:
        """The uint8 images of ``index``, a share :attr:`copies_p` of them from a random copy (drawn on the CPU
        from torch's global generator, which checkpoints save)."""
        if self.copies is None or self.copies_p <= 0:
            return self.data[index]
        n = len(index)
        use = (torch.rand(n) < self.copies_p).to(self.device)
        which = torch.randint(0, len(self.copies), (n,)).to(self.device)
        out = self.data[index]
        rows = use.nonzero().flatten()
        out[rows] = self.copies[which[rows], index[rows]]
        return out


def autocast(device: torch.device, precision: str = "auto"):
    """bf16 autocast where it pays: "auto" is bf16 on CUDA, float32 on the CPU (see TrainConfig.precision)."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, not {precision!r}")
    enabled = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def use_channels_last(cfg: TrainConfig, device: torch.device) -> bool:
    if cfg.channels_last is not None:
        return cfg.channels_last
    return device.type == "cuda" or not cfg.model.startswith("convnet")


@torch.inference_mode()
def predict_logits(model: nn.Module, images: DeviceImages | np.ndarray, batch_size: int = 128,
                   device: torch.device | None = None, precision: str = "auto") -> np.ndarray:
    if not isinstance(images, DeviceImages):
        images = DeviceImages(images, device or next(model.parameters()).device)
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(images)), device=images.device)
        with autocast(images.device, precision):
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


def init_weights(model: nn.Module, cfg: TrainConfig) -> int:
    """Load ``cfg.init`` into ``model``; returns how many tensors were copied. A different architecture, width
    or class list is refused, unless ``cfg.init_partial``: then every layer whose tensors all match in name and
    shape is copied, and the rest keep their initialisation (no layer matching is refused)."""
    start, card = load_model(cfg.init)
    if list(card["classes"]) != list(get_task(cfg.task).classes) or (
            card["arch"] != cfg.model and not cfg.init_partial):
        raise ValueError(f"--init {cfg.init} holds {card['task']}/{card['arch']}; this run trains "
                         f"{cfg.task}/{cfg.model}")
    source = start.state_dict()
    if cfg.init_partial:
        target = model.state_dict()
        layers: dict[str, list[str]] = {}
        for k in target:
            layers.setdefault(k.rpartition(".")[0], []).append(k)
        # A layer is copied whole or not at all: all of its tensors must match in name and shape.
        common = {k: source[k] for keys in layers.values()
                  if all(k in source and source[k].shape == target[k].shape for k in keys) for k in keys}
        if not common:
            raise ValueError(f"--init {cfg.init}: no tensor matches {cfg.model} in name and shape")
        target.update(common)
        model.load_state_dict(target)
        return len(common)
    try:
        model.load_state_dict(source)
    except RuntimeError as exc:
        raise ValueError(f"--init {cfg.init} does not fit this model's shape: {exc}") from None
    return len(source)


def view_params(n: int, views: int, seed: int) -> torch.Tensor:
    """``views x n x 6`` augmentation parameters: view k of image i is the same in every run with ``seed``."""
    gen = torch.Generator().manual_seed(10_007 * (seed + 1))
    return torch.stack([sample_params(n, generator=gen) for _ in range(views)])


@torch.inference_mode()
def teacher_view_logits(teacher: nn.Module, images: DeviceImages, views: torch.Tensor,
                        batch_size: int = 128, precision: str = "auto") -> torch.Tensor:
    """The teacher's logits for every image under every view: ``views x n x classes`` (float32, CPU)."""
    teacher.eval()
    out = []
    for k in range(len(views)):
        rows = []
        for start in range(0, len(images), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(images)), device=images.device)
            with autocast(images.device, precision):
                rows.append(teacher(images.batch(idx, views=views[k][idx.cpu()])).float().cpu())
        out.append(torch.cat(rows))
    return torch.stack(out)


def cached_teacher_view_logits(cfg: TrainConfig, teacher: nn.Module, teacher_version: str, images: DeviceImages,
                               labels: np.ndarray, views: torch.Tensor, cache_dir: Path | None,
                               progress: bool) -> torch.Tensor:
    """:func:`teacher_view_logits`, read from ``cache_dir`` when the same teacher, images, views and seed made
    it before (the key hashes all four), else computed and written there."""
    key = hashlib.sha256()
    for part in (teacher_version, str(cfg.seed), str(cfg.kd_views)):
        key.update(part.encode())
    key.update(np.ascontiguousarray(images.data[:, ::8, ::8].cpu().numpy()).tobytes())
    key.update(np.ascontiguousarray(labels).tobytes())
    path = cache_dir / f"kd-views-{key.hexdigest()[:16]}.pt" if cache_dir is not None else None
    if path is not None and path.exists():
        return torch.load(path)
    t0 = time.time()
    logits = teacher_view_logits(teacher, images, views, precision=cfg.precision)
    if progress:
        print(f"teacher logits for {len(views)} views x {len(images)} images: {time.time() - t0:.0f} s", flush=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(logits, path)
    return logits


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _config_key(cfg: TrainConfig) -> dict:
    """What must match for a checkpoint to resume this run (not the epoch count, which may be raised)."""
    d = cfg.to_dict()
    for k in ("epochs", "patience", "device", "extra"):
        d.pop(k, None)
    for k in _LATER_OPTIONS:  # options added after checkpoints were written: left out while at their default
        if d.get(k) == getattr(TrainConfig, k):
            d.pop(k)
    return d


_LATER_OPTIONS = ("aug_blur", "consistency", "mask_background", "input_pool", "input_median", "input_smooth",
                  "aug_scan_noise",
                  "aug_scan_copies", "aug_scan_p")


@dataclass
class Teacher:
    """What distillation reads: the teacher and, when cached, its logits (per view with ``views``)."""

    model: nn.Module
    logits: torch.Tensor | None = None  # n x classes, or views x n x classes
    views: torch.Tensor | None = None  # views x n x 6 augmentation parameters (consistent distillation)

    def logits_for(self, x: torch.Tensor, idx: torch.Tensor, view: int | None) -> torch.Tensor:
        if self.views is not None:
            return self.logits[view][idx]
        if self.logits is not None:
            return self.logits[idx]
        with torch.no_grad():
            return self.model(x)


def load_teacher(cfg: TrainConfig, device: torch.device, train: ImageFolder, images: DeviceImages,
                 cache_dir: Path | None, progress: bool) -> Teacher | None:
    """``cfg.teacher`` (one model, or the mean logits of several) on ``device``, with its logits cached as the
    configuration asks (None without one)."""
    paths = cfg.teacher_paths()
    if not paths:
        return None
    model, card = load_ensemble(paths, device)
    if device.type == "cuda" or not str(card.get("arch", "")).startswith("convnet"):
        model = model.to(memory_format=torch.channels_last)  # 40% faster for Lite0 on the CPU too
    if cfg.kd_views:
        views = view_params(len(train), cfg.kd_views, cfg.seed)
        logits = cached_teacher_view_logits(cfg, model, card.get("version", "+".join(paths)), images,
                                            train.labels, views, cache_dir, progress).to(device)
        return Teacher(model, logits, views)
    if cfg.kd_cache:
        return Teacher(model, torch.from_numpy(predict_logits(model, images)).to(device))
    return Teacher(model)


def loss_class_weights(cfg: TrainConfig, labels: np.ndarray, num_classes: int,
                       device: torch.device) -> torch.Tensor | None:
    """Inverse-frequency class weights with ``cfg.balanced`` (mean weight 1 over the classes present)."""
    if not cfg.balanced:
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / num_classes, 0.0)
    return torch.tensor(w, dtype=torch.float32, device=device)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the weights only (not on biases and norm scales)."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, foreach=True)


def consistency_loss(features: torch.Tensor, clean_features: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between a view's features and the clean image's (detached), relative to the clean
    features' mean square: 0 for features that the view does not change, 1 for features reduced to zero."""
    clean = clean_features.detach().float()
    return (features.float() - clean).pow(2).mean() / clean.pow(2).mean().clamp_min(1e-8)


def batch_loss(cfg: TrainConfig, logits: torch.Tensor, y: torch.Tensor, teacher_logits: torch.Tensor | None,
               class_weights: torch.Tensor | None) -> torch.Tensor:
    """Label-smoothed cross-entropy, or the distillation loss (Hinton et al. 2015) when a teacher speaks."""
    if teacher_logits is not None:
        return distillation_loss(logits, teacher_logits, y, cfg.kd_temperature, cfg.w_soft, cfg.w_ce,
                                 cfg.label_smoothing, class_weights)
    return F.cross_entropy(logits.float(), y, weight=class_weights, label_smoothing=cfg.label_smoothing)


@dataclass
class RunState:
    """Where a run stands after ``epoch`` epochs: everything a checkpoint holds besides model and optimizer."""

    step: int = 0
    epoch: int = 0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    best_epoch: int = -1
    best_state: dict | None = None
    best_logits: np.ndarray | None = None

    def select(self, cfg: TrainConfig, epoch: int, report: dict, val_logits: np.ndarray, model: nn.Module) -> None:
        """Keep this epoch (1-based ``epoch``) if it beats the best ``cfg.select`` so far (macro-F1 where the
        report lacks that metric)."""
        score = report.get(cfg.select, report["macro_f1"])
        if self.best is None or score > self.best.get(cfg.select, self.best["macro_f1"]):
            self.best, self.best_epoch, self.best_logits = report, epoch, val_logits
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def patience_ran_out(self, cfg: TrainConfig) -> bool:
        return self.epoch - self.best_epoch >= cfg.patience


def save_checkpoint(path: Path, cfg: TrainConfig, state: RunState, model: nn.Module,
                    opt: torch.optim.Optimizer, gen: torch.Generator) -> None:
    """``checkpoint.pt``: the keys :func:`load_checkpoint` reads; written atomically (a kill mid-write leaves the
    previous epoch's checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"config": _config_key(cfg), "epochs": cfg.epochs, "epoch": state.epoch, "step": state.step,
                "seconds": state.seconds, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "history": state.history, "best": state.best, "best_epoch": state.best_epoch,
                "best_state": state.best_state, "best_logits": state.best_logits, "generator": gen.get_state(),
                "rng": _rng_state()}, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, cfg: TrainConfig, model: nn.Module, opt: torch.optim.Optimizer,
                    gen: torch.Generator) -> RunState:
    """Restore model, optimizer, data order and every RNG from ``path``; a checkpoint of another configuration
    (anything but the epoch count and patience) is refused."""
    ck = torch.load(path, weights_only=False)
    if ck["config"] != _config_key(cfg) or ck["epochs"] != cfg.epochs:
        raise ValueError(f"{path} was written by another configuration; start a new --out folder")
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    gen.set_state(ck["generator"])
    _set_rng_state(ck["rng"])
    return RunState(step=ck["step"], epoch=ck["epoch"], seconds=ck["seconds"], history=ck["history"],
                    best=ck["best"], best_epoch=ck["best_epoch"], best_state=ck["best_state"],
                    best_logits=ck["best_logits"])


@dataclass
class Schedule:
    """Steps per epoch and the learning rate at each step: linear warm-up, then cosine (:func:`lr_at`)."""

    steps_per_epoch: int
    total: int
    warmup: int
    base_lr: float

    @classmethod
    def of(cls, cfg: TrainConfig, n_train: int) -> Schedule:
        steps = max(1, n_train // cfg.batch_size)
        return cls(steps, steps * cfg.epochs, int(cfg.warmup_epochs * steps), cfg.lr)

    def lr(self, step: int) -> float:
        return lr_at(step, self.total, self.warmup, self.base_lr)


def train_one_epoch(cfg: TrainConfig, epoch: int, model: nn.Module, opt: torch.optim.Optimizer,
                    schedule: Schedule, state: RunState, images: DeviceImages, labels: torch.Tensor,
                    order: torch.Tensor, teacher: Teacher | None, class_weights: torch.Tensor | None,
                    progress: bool) -> tuple[float, int | None]:
    """One pass over ``order`` in batches (advancing ``state.step``); returns the mean training loss and the
    resolution the epoch ran at (None: full size)."""
    model.train()
    size = cfg.low_res if cfg.low_res and epoch < cfg.low_res_epochs else None
    view = epoch % cfg.kd_views if teacher is not None and teacher.views is not None else None
    running, seen = 0.0, 0
    bar = tqdm(range(schedule.steps_per_epoch), desc=f"{cfg.model} epoch {epoch + 1}/{cfg.epochs}",
               disable=None if progress else True, leave=False)
    for b in bar:
        idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        for g in opt.param_groups:
            g["lr"] = schedule.lr(state.step)
        if view is not None:
            x = images.batch(idx, views=teacher.views[view][idx.cpu()], size=size)
        else:
            x = images.batch(idx, cfg.augment, size=size)
        y = labels[idx]
        with autocast(images.device, cfg.precision):
            if cfg.consistency > 0:
                # One pass over both views (batch norm sees them together); the clean view only anchors.
                both = model.forward_features(torch.cat([x, images.batch(idx, size=size)]))
                feats, clean = both.chunk(2)
                logits = model.forward_head(feats)
            else:
                logits = model(x)
            t_logits = teacher.logits_for(x, idx, view) if teacher is not None else None
            loss = batch_loss(cfg, logits, y, t_logits, class_weights)
            if cfg.consistency > 0:
                loss = loss + cfg.consistency * consistency_loss(feats, clean)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state.step += 1
        running += loss.item() * len(idx)
        seen += len(idx)
        bar.set_postfix(loss=f"{running / seen:.4f}")
    return running / max(seen, 1), size


def _seed_everything(seed: int) -> torch.Generator:
    """Seed torch, numpy and random; the returned generator orders the training data."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    return torch.Generator().manual_seed(seed)


def build_model(cfg: TrainConfig, num_classes: int, device: torch.device, channels_last: bool) -> nn.Module:
    """``cfg.model`` on ``device``, started from ``cfg.init`` when given."""
    if cfg.low_res and cfg.low_res_epochs and cfg.model.startswith("convnet"):
        raise ValueError("progressive resizing needs a global-pooling model; the convnets' heads fix the size")
    model = create_model(cfg.model, num_classes=num_classes, **cfg.model_args()).to(device)
    if cfg.init:
        copied = init_weights(model, cfg)
        if cfg.init_partial:
            cfg.extra["init_tensors_copied"] = f"{copied} of {len(model.state_dict())}"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _epoch_row(epoch: int, train_loss: float, seconds: float, size: int | None, report: dict) -> dict:
    return {"epoch": epoch + 1, "train_loss": train_loss, "seconds": seconds,
            **({"resolution": size} if size else {}),
            **{k: report[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "ece", "nll")},
            **{k: report[k] for k in ("subject_accuracy", "subject_balanced_accuracy") if k in report}}


def fit(cfg: TrainConfig, train: ImageFolder, val: ImageFolder,
        on_epoch: Callable[[int, dict], None] | None = None, progress: bool = True,
        checkpoint: str | Path | None = None, resume: bool = False, stop_after: int | None = None) -> FitResult:
    """Train ``cfg.model`` on ``train``, select the epoch with the best ``cfg.select`` on ``val``.

    ``on_epoch(epoch, val_report)`` is called after each epoch (an Optuna pruner raises from there).
    ``checkpoint``: a file written after every epoch (model, optimizer, step, RNG states, history, best so
    far); with ``resume`` the run continues from it and ends where an uninterrupted run ends. ``stop_after``
    stops after that many epochs in all (for tests and time-boxed sessions; resume continues it).

    The steps, in the order that keeps a resumed run bit-identical (every random draw in the same place):
    seed; :func:`build_model`; the data on the device; :func:`load_teacher`; :func:`make_optimizer`; then per
    epoch :func:`train_one_epoch`, validation, :meth:`RunState.select`, :func:`save_checkpoint`."""
    task = get_task(cfg.task)
    device = resolve_device(cfg.device)
    gen = _seed_everything(cfg.seed)
    channels_last = use_channels_last(cfg, device)
    model = build_model(cfg, task.num_classes, device, channels_last)
    copies = None
    if cfg.aug_scan_noise > 0:
        from diseaseid.data.scan_noise import scan_noise_copies

        copies = scan_noise_copies(train.root, train.files, train.images_key(), cfg.aug_scan_noise,
                                   cfg.aug_scan_copies, cfg.seed)
    tr_images = DeviceImages(train.images, device, channels_last, cfg.augment_config(), copies, cfg.aug_scan_p)
    va_images = DeviceImages(val.images, device, channels_last)
    y_train = torch.from_numpy(train.labels).to(device)
    checkpoint = Path(checkpoint) if checkpoint else None
    teacher = load_teacher(cfg, device, train, tr_images, checkpoint.parent / "kd-cache" if checkpoint else None,
                           progress)
    class_weights = loss_class_weights(cfg, train.labels, task.num_classes, device)
    opt = make_optimizer(model, cfg)
    schedule = Schedule.of(cfg, len(train))

    state = RunState()
    if resume and checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint, cfg, model, opt, gen)
        if progress:
            print(f"resumed from {checkpoint} after epoch {state.epoch}", flush=True)
    first_epoch, elapsed = state.epoch, state.seconds
    start = time.time() - elapsed
    stopped_early = first_epoch > 0 and state.patience_ran_out(cfg)
    for epoch in range(first_epoch, cfg.epochs):
        if stopped_early or (stop_after is not None and epoch >= stop_after):
            break
        order = torch.randperm(len(train), generator=gen).to(device)
        train_loss, size = train_one_epoch(cfg, epoch, model, opt, schedule, state, tr_images, y_train, order,
                                           teacher, class_weights, progress)
        val_logits = predict_logits(model, va_images, precision=cfg.precision)
        report = evaluate_logits(val_logits, val)
        seconds = time.time() - start
        row = _epoch_row(epoch, train_loss, seconds, size, report)
        state.history.append(row)
        state.select(cfg, epoch + 1, report, val_logits, model)
        state.epoch, state.seconds = epoch + 1, seconds
        if progress:
            done = epoch + 1 - first_epoch
            eta = (time.time() - start - elapsed) / done * (cfg.epochs - epoch - 1)
            print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
                  + f" eta={eta / 60:.1f}min", flush=True)
        if on_epoch is not None:
            on_epoch(epoch, report)
        stopped_early = state.patience_ran_out(cfg)
        if checkpoint is not None:
            save_checkpoint(checkpoint, cfg, state, model, opt, gen)
        if stopped_early and progress:
            print(f"early stop: no {cfg.select} improvement for {cfg.patience} epochs")
    model.load_state_dict(state.best_state)
    return FitResult(model.eval(), state.best, state.best_epoch, state.history, time.time() - start,
                     state.best_logits)
