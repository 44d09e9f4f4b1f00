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


def cmd_train_mil(args) -> int:
    from diseaseid.models import save_model
    from diseaseid.models.checkpoint import file_sha256
    from diseaseid.paths import weights_dir
    from diseaseid.serving.predictor import Predictor, shipped_weights
    from diseaseid.train.data import load_task_data
    from diseaseid.train.metrics import classification_report, softmax, subject_report
    from diseaseid.train.mil import slice_embeddings, subject_bags, train_mil
    from diseaseid.train.trainer import predict_logits

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.backbone == "imagenet":
        from diseaseid.models import create_model

        backbone_path = Path("imagenet-lite0")
        net = create_model("lite0", num_classes=1000, pretrained=True).eval()
        backbone = Predictor(net, {"task": args.task, "arch": "lite0", "role": "imagenet",
                                   "version": "imagenet", "classes": list(TASKS[args.task].classes)})
    else:
        backbone_path = Path(args.backbone) if args.backbone else shipped_weights(args.task, "teacher")
        backbone = Predictor.from_weights(backbone_path)
    train, val, split = load_task_data(args.task, args.data)
    classes = train.task.classes
    feats_tr = slice_embeddings(backbone.model, train.images)
    feats_va = slice_embeddings(backbone.model, val.images)
    tr_bags, va_bags = subject_bags(train, feats_tr), subject_bags(val, feats_va)
    print(f"[{args.task}] {len(tr_bags)} train subjects, {len(va_bags)} validation subjects, "
          f"embeddings {feats_tr.shape[1]}-d from {backbone.name}")

    baseline, slice_base = {}, {}
    if backbone.card.get("role") != "imagenet":
        # Baseline: the backbone's own slice predictions, averaged per subject.
        base_probs = softmax(predict_logits(backbone.model, val.images), backbone.temperature)
        baseline = subject_report(base_probs, val.labels, val.subjects, classes)
        slice_base = classification_report(base_probs, val.labels, classes)

    runs = []
    for seed in range(args.seeds):
        model, best, history = train_mil(tr_bags, va_bags, classes, args.epochs, args.lr, args.weight_decay,
                                         args.hidden, args.dropout, seed=seed, class_weighting=args.class_weights)
        runs.append((best["balanced_accuracy"], seed, model, best, history))
    scores = np.array([r[0] for r in runs])
    _, seed, model, best, history = runs[0]  # seed 0 is shipped: no choice made on validation data
    val_logits = best.pop("val_logits")
    summary = {
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
    out = Path(args.out)
    card = {"task": args.task, "role": "mil", "arch": "attention_mil",
            "arch_args": {"in_features": int(feats_tr.shape[1]), "hidden": args.hidden, "dropout": args.dropout},
            "classes": list(classes), "backbone": {"file": backbone_path.name, "version": backbone.version,
                                                   "sha256": file_sha256(backbone_path)
                                                   if backbone_path.exists() else None},
            "training": {k: v for k, v in vars(args).items() if k != "func"} | {"seed": seed},
            "metrics": {"validation": {k: best[k] for k in ("accuracy", "balanced_accuracy", "macro_f1",
                                                            "confusion_matrix", "per_class")},
                        "comparison": summary},
            "history": history, "split": {"seed": split.get("seed"), "groups": split.get("groups")},
            "data_fingerprint": split.get("data_fingerprint")}
    stem = out / "mil"
    save_model(model, stem, card, dtype=torch.float32)
    print(json.dumps(summary, indent=1))
    if args.ship:
        dest = weights_dir() / args.task
        for suffix in (".safetensors", ".json"):
            shutil.copy(stem.with_suffix(suffix), dest / f"mil{suffix}")
        print("shipped:", dest / "mil.safetensors")
    _ = val_logits
    return 0
