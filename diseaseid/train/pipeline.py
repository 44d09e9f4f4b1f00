"""Train, calibrate, choose the OOD threshold, and write weights + model card + plots in one step."""
from __future__ import annotations

import json
import platform
import shutil
import sys
from pathlib import Path

import torch

from diseaseid.data.dataset import ImageFolder
from diseaseid.models import save_model
from diseaseid.models.checkpoint import file_sha256, preprocess_card, read_card
from diseaseid.ood.fit import energy_summary
from diseaseid.paths import REPO_ROOT, weights_dir
from diseaseid.train.calibration import calibration_summary
from diseaseid.train.config import TrainConfig
from diseaseid.train.plots import confusion_matrix_plot, training_curve
from diseaseid.train.trainer import FitResult, fit, predict_logits


def _relative(path: str | Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def package(result: FitResult, cfg: TrainConfig, train: ImageFolder, val: ImageFolder, split: dict,
            out: str | Path, role: str | None = None, split_path: str | Path | None = None,
            extra_card: dict | None = None) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = result.model
    val_logits = result.val_logits if result.val_logits is not None else predict_logits(model, val.images)
    calib = calibration_summary(val_logits, val.labels)
    ood = energy_summary(val.images, val_logits, lambda x: predict_logits(model, x))
    metrics = {k: v for k, v in result.best.items()}
    card = {
        "task": cfg.task,
        "role": role or ("teacher" if cfg.model == "lite0" and not cfg.teacher_paths() else "student"),
        "arch": cfg.model,
        "arch_args": cfg.model_args(),
        "classes": list(train.task.classes),
        "training": {**cfg.to_dict(), "best_epoch": result.best_epoch, "seconds": round(result.seconds, 1),
                     "device": str(next(model.parameters()).device),
                     "cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
                     "n_train": len(train), "n_val": len(val)},
        "split": {"file": _relative(split_path) if split_path else None,
                  "sha256": file_sha256(split_path) if split_path and Path(split_path).exists() else None,
                  "groups": split.get("groups"), "seed": split.get("seed")},
        "data_fingerprint": split.get("data_fingerprint"),
        "preprocess": preprocess_card(cfg.augmentation_card()),
        "metrics": {"validation": metrics},
        "calibration": calib,
        "ood": ood,
        "history": result.history,
        "command": " ".join(["python -m diseaseid", *sys.argv[1:]]) if sys.argv and "diseaseid" in sys.argv[0]
        else None,
        **(extra_card or {}),
    }
    if cfg.init:
        start = read_card(cfg.init)
        card["training"]["init_from"] = {"file": _relative(cfg.init), "version": start.get("version"),
                                         "epochs": start.get("training", {}).get("epochs"),
                                         "command": start.get("command")}
    teachers = []
    for path in cfg.teacher_paths():  # the path may be shipped over later: keep which teacher this was
        teacher = read_card(path)
        teachers.append({"file": _relative(path), "version": teacher.get("version"),
                         "accuracy": teacher.get("metrics", {}).get("validation", {}).get("accuracy")})
    if teachers:
        card["training"]["teacher_from"] = teachers[0] if len(teachers) == 1 else {
"ensemble": "mean logits", "members": teachers}
    if card["training"]["device"] == "cpu":
        card["note"] = f"trained on the CPU ({torch.get_num_threads()} threads), {cfg.epochs} epochs"
    stem = out / card["role"]
    save_model(model, stem, card)
    if result.history:  # a soup of several runs has no curve of its own
        training_curve(result.history, out / f"{card['role']}-curve.png", f"{cfg.task} {cfg.model}")
    confusion_matrix_plot(metrics["confusion_matrix"], train.task.classes, out / f"{card['role']}-confusion.png",
                          f"{cfg.task} {cfg.model} validation")
    return stem


def ship(stem: str | Path, task: str, role: str) -> Path:
    """Copy weights, card and plots into ``weights/<task>/`` under the role's name."""
    stem = Path(stem)
    dest = weights_dir() / task
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".json"):
        shutil.copy(stem.with_suffix(suffix), dest / f"{role}{suffix}")
    for plot in ("curve", "confusion"):
        src = stem.parent / f"{stem.name}-{plot}.png"
        if src.exists():
            shutil.copy(src, dest / f"{role}-{plot}.png")
        else:  # the shipped model's plot or none: never the plot of the model it replaced
            (dest / f"{role}-{plot}.png").unlink(missing_ok=True)
    card = json.loads((dest / f"{role}.json").read_text())
    card["role"] = role
    (dest / f"{role}.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    return dest / f"{role}.safetensors"


def train_and_package(cfg: TrainConfig, train: ImageFolder, val: ImageFolder, split: dict, out: str | Path,
                      role: str | None = None, split_path=None, progress: bool = True, resume: bool = False,
                      stop_after: int | None = None) -> tuple[Path, FitResult]:
    """Train with a checkpoint after every epoch in ``out/checkpoint.pt`` (``resume`` continues from it),
    then package."""
    result = fit(cfg, train, val, progress=progress, checkpoint=Path(out) / "checkpoint.pt", resume=resume,
                 stop_after=stop_after)
    return package(result, cfg, train, val, split, out, role, split_path), result


def recalibrate(path: str | Path, data: str | Path | None = None) -> dict:
    """Recompute calibration and the OOD threshold of saved weights on their task's validation split and
    update the model card in place (after a change to either method; the weights stay as they are)."""
    from diseaseid.models import load_model
    from diseaseid.models.checkpoint import update_card
    from diseaseid.train.data import load_task_data

    model, card = load_model(path)
    _, val, _ = load_task_data(card["task"], data)
    logits = predict_logits(model, val.images)
    calib = calibration_summary(logits, val.labels)
    ood = energy_summary(val.images, logits, lambda x: predict_logits(model, x))
    update_card(path, calibration=calib, ood=ood)
    return {"calibration": calib, "ood": ood}
