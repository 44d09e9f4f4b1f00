"""``diseaseid train-mil``: the subject-level attention-MIL head over a frozen slice model's embeddings."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from diseaseid.tasks import TASKS


def register(sub) -> None:
    p = sub.add_parser("train-mil", help="train a subject-level attention-MIL head on frozen slice embeddings")
    p.add_argument("--task", default="dementia", choices=sorted(TASKS))
    p.add_argument("--backbone", default=None,
                   help="slice model weights (default: the shipped teacher), or 'imagenet' for Lite0's ImageNet "
                        "weights without fine-tuning")
    p.add_argument("--data", default=None)
    p.add_argument("--epochs", type=int, default=200, help="fixed; the last epoch is kept (no selection on val)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--class-weights", choices=("balanced", "sqrt", "none"), default="balanced",
                   help="loss weights per class: inverse frequency, its square root, or none")
    p.add_argument("--seeds", type=int, default=5, help="train this many seeds and report mean and spread")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="runs/dementia-mil")
    p.add_argument("--ship", action="store_true", help="copy to weights/<task>/mil.*")
    p.set_defaults(func=cmd_train_mil)


def load_backbone(task: str, backbone: str | None):
    """The slice model whose embeddings the head reads, and the file it came from: ``backbone`` weights, the
    shipped teacher (None), or Lite0's ImageNet weights without fine-tuning (``imagenet``)."""
    from diseaseid.serving.predictor import Predictor, shipped_weights

    if backbone == "imagenet":
        from diseaseid.models import create_model

        net = create_model("lite0", num_classes=1000, pretrained=True).eval()
        return Predictor(net, {"task": task, "arch": "lite0", "role": "imagenet", "version": "imagenet",
                               "classes": list(TASKS[task].classes)}), Path("imagenet-lite0")
    path = Path(backbone) if backbone else shipped_weights(task, "teacher")
    return Predictor.from_weights(path), path


def mean_of_slices_baseline(backbone, val) -> tuple[dict, dict]:
    """The backbone's own slice predictions, averaged per subject: (subject report, slice report); empty for
    an ImageNet backbone, which has no classes of ours."""
    from diseaseid.train.metrics import classification_report, softmax, subject_report
    from diseaseid.train.trainer import predict_logits

    if backbone.card.get("role") == "imagenet":
        return {}, {}
    probs = softmax(predict_logits(backbone.model, val.images), backbone.temperature)
    classes = val.task.classes
    return subject_report(probs, val.labels, val.subjects, classes), classification_report(probs, val.labels, classes)


def train_seeds(args, tr_bags: dict, va_bags: dict, classes) -> list[tuple]:
    """One head per seed: (validation balanced accuracy, seed, model, best, history) in seed order."""
    from diseaseid.train.mil import train_mil

    runs = []
    for seed in range(args.seeds):
        model, best, history = train_mil(tr_bags, va_bags, classes, args.epochs, args.lr, args.weight_decay,
                                         args.hidden, args.dropout, seed=seed, class_weighting=args.class_weights)
        runs.append((best["balanced_accuracy"], seed, model, best, history))
    return runs


def comparison(args, baseline: dict, slice_base: dict, best: dict, scores: np.ndarray) -> dict:
    """The card's ``metrics.comparison``: the mean-of-slices baseline beside the head (seed 0 and all seeds)."""
    return {
        "baseline_mean_of_slices": {"subject_balanced_accuracy": baseline.get("subject_balanced_accuracy"),
                                    "subject_accuracy": baseline.get("subject_accuracy"),
                                    "slice_balanced_accuracy": slice_base.get("balanced_accuracy")},
        "mil": {"subject_balanced_accuracy_seed0": best["balanced_accuracy"],
                "subject_accuracy_seed0": best["accuracy"],
                "subject_balanced_accuracy_mean_over_seeds": float(scores.mean()),
                "subject_balanced_accuracy_std_over_seeds": float(scores.std()),
                "seeds": args.seeds, "epochs": best["epoch"],
                "note": "fixed epochs, last epoch kept, seed 0 shipped: no selection on these subjects"},
    }


def mil_card(args, seed: int, in_features: int, classes, backbone, backbone_path: Path, best: dict,
             history: list, summary: dict, split: dict) -> dict:
    from diseaseid.models.checkpoint import file_sha256

    return {"task": args.task, "role": "mil", "arch": "attention_mil",
            "arch_args": {"in_features": in_features, "hidden": args.hidden, "dropout": args.dropout},
            "classes": list(classes), "backbone": {"file": backbone_path.name, "version": backbone.version,
                                                   "sha256": file_sha256(backbone_path)
                                                   if backbone_path.exists() else None},
            "training": {k: v for k, v in vars(args).items() if k != "func"} | {"seed": seed},
            "metrics": {"validation": {k: best[k] for k in ("accuracy", "balanced_accuracy", "macro_f1",
                                                            "confusion_matrix", "per_class")},
                        "comparison": summary},
            "history": history, "split": {"seed": split.get("seed"), "groups": split.get("groups")},
            "data_fingerprint": split.get("data_fingerprint")}


def cmd_train_mil(args) -> int:
    """Embed every slice with the frozen backbone, bag them per subject, train one head per seed, save seed 0
    (no choice made on validation data) with the baseline beside it; ``--ship`` copies it to weights/."""
    from diseaseid.models import save_model
    from diseaseid.paths import weights_dir
    from diseaseid.train.data import load_task_data
    from diseaseid.train.mil import slice_embeddings, subject_bags

    if args.threads:
        torch.set_num_threads(args.threads)
    backbone, backbone_path = load_backbone(args.task, args.backbone)
    train, val, split = load_task_data(args.task, args.data)
    classes = train.task.classes
    feats_tr = slice_embeddings(backbone.model, train.images)
    feats_va = slice_embeddings(backbone.model, val.images)
    tr_bags, va_bags = subject_bags(train, feats_tr), subject_bags(val, feats_va)
    print(f"[{args.task}] {len(tr_bags)} train subjects, {len(va_bags)} validation subjects, "
          f"embeddings {feats_tr.shape[1]}-d from {backbone.name}")

    baseline, slice_base = mean_of_slices_baseline(backbone, val)
    runs = train_seeds(args, tr_bags, va_bags, classes)
    _, seed, model, best, history = runs[0]  # seed 0 is shipped: no choice made on validation data
    best.pop("val_logits")
    summary = comparison(args, baseline, slice_base, best, np.array([r[0] for r in runs]))
    card = mil_card(args, seed, int(feats_tr.shape[1]), classes, backbone, backbone_path, best, history, summary,
                    split)
    stem = Path(args.out) / "mil"
    save_model(model, stem, card, dtype=torch.float32)
    print(json.dumps(summary, indent=1))
    if args.ship:
        dest = weights_dir() / args.task
        for suffix in (".safetensors", ".json"):
            shutil.copy(stem.with_suffix(suffix), dest / f"mil{suffix}")
        print("shipped:", dest / "mil.safetensors")
    return 0
