"""``diseaseid train-mil``: the subject-level attention-MIL head over a frozen slice model's embeddings
(``diseaseid.train.mil``)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from diseaseid.cli.common import set_threads
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
    """Embed every slice with the frozen backbone, bag them per subject, train one head per seed, save seed 0
    (no choice made on validation data) with the baseline beside it; ``--ship`` copies it to weights/."""
    from diseaseid.models import save_model
    from diseaseid.paths import weights_dir
    from diseaseid.train.data import load_task_data
    from diseaseid.train.mil import (
        comparison,
        load_backbone,
        mean_of_slices_baseline,
        mil_card,
        slice_embeddings,
        subject_bags,
        train_seeds,
    )

    set_threads(args)
    backbone, backbone_path = load_backbone(args.task, args.backbone)
    train, val, split = load_task_data(args.task, args.data)
    classes = train.task.classes
    feats_tr = slice_embeddings(backbone.model, train.images)
    feats_va = slice_embeddings(backbone.model, val.images)
    tr_bags, va_bags = subject_bags(train, feats_tr), subject_bags(val, feats_va)
    print(f"[{args.task}] {len(tr_bags)} train subjects, {len(va_bags)} validation subjects, "
          f"embeddings {feats_tr.shape[1]}-d from {backbone.name}")

    baseline, slice_base = mean_of_slices_baseline(backbone, val)
    runs = train_seeds(tr_bags, va_bags, classes, args.seeds, args.epochs, args.lr, args.weight_decay, args.hidden,
                       args.dropout, args.class_weights)
    _, seed, model, best, history = runs[0]  # seed 0 is shipped: no choice made on validation data
    best.pop("val_logits")
    summary = comparison(baseline, slice_base, best, np.array([r[0] for r in runs]), args.seeds)
    training = {k: v for k, v in vars(args).items() if k != "func"}
    card = mil_card(args.task, training, seed, int(feats_tr.shape[1]), args.hidden, args.dropout, classes, backbone,
                    backbone_path, best, history, summary, split)
    stem = Path(args.out) / "mil"
    save_model(model, stem, card, dtype=torch.float32)
    print(json.dumps(summary, indent=1))
    if args.ship:
        dest = weights_dir() / args.task
        for suffix in (".safetensors", ".json"):
            shutil.copy(stem.with_suffix(suffix), dest / f"mil{suffix}")
        print("shipped:", dest / "mil.safetensors")
    return 0
