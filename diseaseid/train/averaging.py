"""Weight averaging of a run's last epochs (SWA-style: Izmailov et al. 2018, "Averaging weights leads to
wider optima"): the uniform mean of the epoch snapshots' parameters, then batch-norm statistics
re-estimated on un-augmented training images, since the mean of running statistics is not the statistics
of the mean weights. Snapshots are copies of a run's ``checkpoint.pt`` taken after each epoch
(``scripts/snapshot_epochs.sh``).

The same mean over the final weights of *several* runs is a uniform model soup (Wortsman et al. 2022, "Model
soups"): runs of one architecture that started from the same weights and differ in their recipe (loss,
learning rate) tend to land in one basin, where the mean of the weights beats each of them."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.optim.swa_utils import update_bn

from diseaseid.data.dataset import ImageFolder
from diseaseid.models import create_model, load_model
from diseaseid.train.config import TrainConfig
from diseaseid.train.trainer import DeviceImages, FitResult, evaluate_logits, predict_logits, use_channels_last


def average_states(states: list[dict]) -> dict:
    """Uniform mean of state dicts with the same keys; integer buffers (BN's ``num_batches_tracked``)
    are taken from the last state."""
    if not states:
        raise ValueError("nothing to average")
    keys = states[-1].keys()
    if any(s.keys() != keys for s in states):
        raise ValueError("the states differ in their keys: not snapshots of one model")
    out = {}
    for k in keys:
        last = states[-1][k]
        out[k] = (torch.stack([s[k].float() for s in states]).mean(0).to(last.dtype)
                  if last.is_floating_point() else last.clone())
    return out


def reestimate_batchnorm(model: nn.Module, images: DeviceImages, n: int = 1024, batch_size: int = 64,
                         seed: int = 0) -> int:
    """Replace every BatchNorm's running mean and variance by their cumulative averages over ``n`` seeded
    un-augmented training images (torch's ``update_bn``); returns how many layers were reset."""
    layers = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    idx = torch.from_numpy(np.random.default_rng(seed).permutation(len(images))[:n])
    was_training = model.training
    update_bn((images.batch(idx[i:i + batch_size]) for i in range(0, len(idx), batch_size)), model)
    model.train(was_training)
    return layers


def mean_model(model: nn.Module, states: list[dict], cfg: TrainConfig, train: ImageFolder, val: ImageFolder,
               bn_images: int) -> tuple[nn.Module, np.ndarray, dict]:
    """Load the mean of ``states`` into ``model``, re-estimate its BN statistics on ``bn_images`` training
    images and evaluate it on ``val``: (model in eval mode, validation logits, report)."""
    model.load_state_dict(average_states(states))
    channels_last = use_channels_last(cfg, torch.device("cpu"))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    reestimate_batchnorm(model, DeviceImages(train.images, torch.device("cpu"), channels_last=channels_last),
                         n=bn_images)
    model.eval()
    logits = predict_logits(model, val.images)
    return model, logits, evaluate_logits(logits, val)


def read_snapshots(paths: list[str | Path], last: int) -> tuple[dict, list[dict]]:
    """(run config, snapshots of the ``last`` highest epochs), one per epoch, from checkpoint copies."""
    by_epoch: dict[int, dict] = {}
    config = None
    for p in paths:
        ck = torch.load(p, map_location="cpu", weights_only=False)
        if config is not None and ck["config"] != config:
            raise ValueError(f"{p} belongs to another run")
        config = ck["config"]
        by_epoch[int(ck["epoch"])] = ck
    if len(by_epoch) < last:
        raise ValueError(f"{last} epochs asked, {len(by_epoch)} snapshots found")
    return config, [by_epoch[e] for e in sorted(by_epoch)[-last:]]


def average_run(paths: list[str | Path], last: int, train: ImageFolder, val: ImageFolder,
                bn_images: int = 1024) -> tuple[FitResult, TrainConfig]:
    """Average the ``last`` epochs found in ``paths``, re-estimate BN, and evaluate on ``val``."""
    t0 = time.time()
    config, snaps = read_snapshots(paths, last)
    cfg = TrainConfig(**{k: v for k, v in config.items() if k in TrainConfig.__dataclass_fields__},
                      epochs=snaps[-1]["epochs"], device="cpu")
    model = create_model(cfg.model, num_classes=len(train.task.classes), **cfg.model_args())
    model, logits, report = mean_model(model, [s["model"] for s in snaps], cfg, train, val, bn_images)
    epochs = [int(s["epoch"]) for s in snaps]
    cfg.extra = {**(cfg.extra or {}), "averaged_epochs": epochs, "bn_reestimated_on": bn_images}
    result = FitResult(model=model, best=report, best_epoch=epochs[-1], history=list(snaps[-1]["history"]),
                       seconds=float(snaps[-1]["seconds"]) + time.time() - t0, val_logits=logits)
    return result, cfg


def soup_problem(cards: list[dict]) -> str | None:
    """Why models with these cards cannot be averaged into a soup (None when they can): they must share the
    task, the classes, the architecture and its arguments, and their starting point: the same ``--init``
    weights and seed, so that the layers trained from scratch started alike too."""
    if len(cards) < 2:
        return "a soup needs at least two models"
    for key, of in (("task", lambda c: c.get("task")), ("classes", lambda c: c.get("classes")),
                    ("architecture", lambda c: (c.get("arch"), c.get("arch_args") or {})),
                    ("starting point (--init and --seed)",
                     lambda c: (c.get("training", {}).get("init_from", {}).get("version"),
                                c.get("training", {}).get("seed")))):
        values = [of(c) for c in cards]
        if any(v != values[0] for v in values):
            return f"the models differ in their {key}: {values}"
    if cards[0].get("training", {}).get("init_from") is None:
        return "the models were not fine-tuned from given weights (--init): nothing says they share a basin"
    return None


def soup_run(paths: list[str | Path], train: ImageFolder, val: ImageFolder,
             bn_images: int = 1024) -> tuple[FitResult, TrainConfig]:
    """The uniform soup of the models in ``paths`` (weights files with cards), BN re-estimated, evaluated on
    ``val``. Its configuration is the first model's, with every ingredient listed in ``extra``."""
    t0 = time.time()
    loaded = [load_model(p) for p in paths]
    cards = [c for _, c in loaded]
    problem = soup_problem(cards)
    if problem:
        raise ValueError(f"cannot average {[str(p) for p in paths]}: {problem}")
    training = cards[0]["training"]
    cfg = TrainConfig(**{**{k: v for k, v in training.items() if k in TrainConfig.__dataclass_fields__},
                         "device": "cpu"})
    model, logits, report = mean_model(loaded[0][0], [m.state_dict() for m, _ in loaded], cfg, train, val,
                                       bn_images)
    cfg.extra = {"soup_of": [{"file": str(p), "version": c.get("version"), "command": c.get("command"),
                              "accuracy": c.get("metrics", {}).get("validation", {}).get("accuracy")}
                             for p, c in zip(paths, cards)],
                 "bn_reestimated_on": bn_images}
    seconds = sum(float(c["training"].get("seconds", 0.0)) for c in cards) + time.time() - t0
    return FitResult(model=model, best=report, best_epoch=int(training.get("best_epoch", cfg.epochs)), history=[],
                     seconds=seconds, val_logits=logits), cfg
