"""``diseaseid train``, ``evaluate``, ``average`` and ``ensemble``: train a model, score one, average several,
compare an ensemble (``diseaseid.train``)."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import torch

from diseaseid.cli.common import load_predictor, model_args, set_threads, task_and_threads
from diseaseid.paths import ROLES


def register(sub) -> None:
    from diseaseid.models import list_models
    from diseaseid.train.config import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="train a model on a task's training split")
    task_and_threads(p)
    p.add_argument("--model", default=d.model, choices=list_models())
    p.add_argument("--data", default=None, help="image-folder root (default: the shared data set)")
    p.add_argument("--split", default=None, help="split file (default: splits/<task>.json)")
    p.add_argument("--per-class", type=int, default=None, help="use a seeded subset of N images per class")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument("--widths", type=lambda s: [int(v) for v in s.split(",")], default=None,
                   help="convnet channel widths, e.g. 16,36,45,54")
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--select", default=d.select, help="validation metric for early stopping")
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--aug-noise", type=float, default=d.aug_noise,
                   help="largest Rician noise sigma of the augmentation, as a fraction of the intensity range")
    p.add_argument("--aug-noise-p", type=float, default=d.aug_noise_p,
                   help="share of training images that get noise at all")
    p.add_argument("--aug-scan-noise", type=float, default=d.aug_scan_noise,
                   help="scanner noise in the raw slice, before the head crop: Rician up to this sigma (of 255) in "
                        "noisy copies of every training slice computed once (0: off)")
    p.add_argument("--aug-scan-copies", type=int, default=d.aug_scan_copies,
                   help="noisy copies per training slice for --aug-scan-noise")
    p.add_argument("--aug-scan-p", type=float, default=d.aug_scan_p,
                   help="share of each batch taken from a noisy copy (--aug-scan-noise)")
    p.add_argument("--aug-blur", type=float, default=d.aug_blur,
                   help="resolution augmentation: half the images down-sampled to a scale in [1 - X, 1] and "
                        "resized back (0: off)")
    p.add_argument("--consistency", type=float, default=d.consistency,
                   help="weight of a feature-consistency loss between each augmented view and its clean image "
                        "(0: off)")
    p.add_argument("--mask-background", action="store_true",
                   help="convnets: the head gate (feature cells without a head pixel zeroed)")
    p.add_argument("--input-pool", type=int, default=d.input_pool,
                   help="convnets: the input averaged over N x N pixels before the first block (1: off)")
    p.add_argument("--input-median", action="store_true",
                   help="Lite0 models: the stem convolution reads the 3 x 3 median of the input (scanner noise "
                        "filtered inside the model)")
    p.add_argument("--input-smooth", type=float, default=d.input_smooth,
                   help="with --input-median: a Gaussian of this many pixels after the median (0: off)")
    p.add_argument("--balanced", action="store_true", help="class-weighted loss")
    p.add_argument("--init", default=None,
                   help="start from these weights (.safetensors of the same architecture), e.g. to train a "
                        "shipped model further")
    p.add_argument("--init-partial", action="store_true",
                   help="--init may hold another architecture: copy the tensors whose names and shapes match "
                        "(e.g. a lite0_stage5 student from its lite0 teacher)")
    p.add_argument("--teacher", nargs="+", default=None,
                   help="distil from these teacher weights (.safetensors); several: their mean logits")
    p.add_argument("--kd-temperature", type=float, default=d.kd_temperature)
    p.add_argument("--w-soft", type=float, default=d.w_soft)
    p.add_argument("--w-ce", type=float, default=d.w_ce)
    p.add_argument("--kd-online", dest="kd_cache", action="store_false",
                   help="run the teacher on every augmented batch instead of caching its logits")
    p.add_argument("--kd-views", type=int, default=d.kd_views,
                   help="consistent distillation: cache the teacher's logits for K seeded augmented views of "
                        "every training image (epoch e trains on view e mod K); 0 = un-augmented logits")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=d.precision,
                   help="auto: bf16 autocast on CUDA, float32 on the CPU")
    p.add_argument("--channels-last", dest="channels_last", action="store_true", default=None)
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--low-res", type=int, default=None, help="progressive resizing: early epochs at this size")
    p.add_argument("--low-res-epochs", type=int, default=0, help="how many epochs run at --low-res")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device)
    p.add_argument("--out", default=None, help="output folder (default: runs/<task>-<model>-<time>); holds "
                                                 "checkpoint.pt, written after every epoch")
    p.add_argument("--resume", action="store_true",
                   help="continue from <out>/checkpoint.pt (same command and --out); ends where an "
                        "uninterrupted run ends")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop after this many epochs in all (resume later with --resume)")
    p.add_argument("--ship", choices=ROLES, default=None,
                   help="also copy the result to weights/<task>/<role>.*")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a model on any image-folder directory")
    model_args(p)
    p.add_argument("--data", default=None, help="image-folder root (default: the validation split)")
    p.add_argument("--out", default=None, help="report JSON path")
    p.add_argument("--uncalibrated", action="store_true", help="ignore the card's temperature")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("average", help="average the weights of a run's last epochs, or of several runs' final "
                                       "models (a model soup); BN re-estimated; package")
    task_and_threads(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--snapshots", nargs="+",
                      help="copies of the run's checkpoint.pt after each epoch (scripts/snapshot_epochs.sh)")
    what.add_argument("--weights", nargs="+",
                      help="a uniform model soup of these .safetensors: one architecture fine-tuned from the "
                           "same --init weights and seed")
    p.add_argument("--last", type=int, default=5, help="how many of the highest epochs to average")
    p.add_argument("--bn-images", type=int, default=1024, help="training images for the BN statistics")
    p.add_argument("--out", required=True, help="folder for the averaged weights, card and plots")
    p.add_argument("--ship", default=None, choices=ROLES, help="also copy the result to weights/<task>/<role>.*")
    p.set_defaults(func=cmd_average)

    p = sub.add_parser("ensemble", help="validation figures of several models and of their mean logits")
    task_and_threads(p)
    p.add_argument("--weights", nargs="+", required=True, help="the members' .safetensors files")
    p.add_argument("--out", default=None, help="report JSON path")
    p.set_defaults(func=cmd_ensemble)


def cmd_train(args) -> int:
    from diseaseid.paths import split_path
    from diseaseid.train.config import TrainConfig
    from diseaseid.train.data import load_task_data
    from diseaseid.train.pipeline import train_and_package

    set_threads(args)
    fields = TrainConfig.__dataclass_fields__
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    if problems := cfg.problems():
        raise SystemExit("train: " + "; ".join(problems))
    if cfg.teacher and len(cfg.teacher) == 1:
        cfg.teacher = cfg.teacher[0]  # one teacher stays a path, as in earlier runs' cards and checkpoints
    train, val, split = load_task_data(args.task, args.data, args.split, args.per_class, args.seed)
    print(f"[{args.task}] train {len(train)} {train.class_counts()}  val {len(val)} {val.class_counts()}")
    out = Path(args.out or f"runs/{args.task}-{args.model}-{dt.datetime.now():%Y%m%d-%H%M%S}")
    split_file = None if args.per_class is not None and args.split is None else (
        Path(args.split) if args.split else split_path(args.task))
    stem, result = train_and_package(cfg, train, val, split, out, role=args.ship, split_path=split_file,
                                     progress=not args.quiet, resume=args.resume, stop_after=args.stop_after)
    return _report_and_ship(stem, result, args, {"best_epoch": result.best_epoch, "seconds": round(result.seconds, 1)})


def _report_and_ship(stem: Path, result, args, head: dict) -> int:
    """Print what a packaged model scored (after ``head``: what it is), and ship it when ``--ship`` asks."""
    from diseaseid.train.pipeline import ship

    card = json.loads(stem.with_suffix(".json").read_text())
    keys = ("accuracy", "balanced_accuracy", "macro_f1", "ece", "subject_accuracy", "subject_balanced_accuracy")
    print(json.dumps({"weights": str(stem.with_suffix(".safetensors")), **head,
                      "validation": {k: round(v, 4) for k, v in result.best.items() if k in keys},
                      "calibration": {k: card["calibration"][k] for k in ("temperature", "ece_before", "ece_after")},
                      "ood": {k: card["ood"][k] for k in ("threshold", "val_mri_flagged", "non_mri_flagged")}},
                     indent=1))
    if args.ship:
        print("shipped:", ship(stem, args.task, args.ship))
    return 0


def cmd_average(args) -> int:
    from diseaseid.models.checkpoint import read_card
    from diseaseid.paths import split_path
    from diseaseid.train.averaging import average_run, soup_run
    from diseaseid.train.data import load_task_data
    from diseaseid.train.pipeline import package

    set_threads(args)
    if args.weights:
        tasks = {read_card(p)["task"] for p in args.weights}
        if tasks != {args.task}:
            raise SystemExit(f"the weights are for {sorted(tasks)}, not {args.task}")
    train, val, split = load_task_data(args.task)
    try:
        result, cfg = (soup_run(args.weights, train, val, bn_images=args.bn_images) if args.weights
                       else average_run(args.snapshots, args.last, train, val, bn_images=args.bn_images))
    except ValueError as e:
        raise SystemExit(str(e)) from None
    stem = package(result, cfg, train, val, split, args.out, role=args.ship, split_path=split_path(args.task))
    averaged = ({"soup_of": [{k: m[k] for k in ("file", "version", "accuracy")} for m in cfg.extra["soup_of"]]}
                if args.weights else {"averaged_epochs": cfg.extra["averaged_epochs"]})
    return _report_and_ship(stem, result, args, averaged)


def cmd_ensemble(args) -> int:
    from diseaseid.models import LogitEnsemble, load_ensemble
    from diseaseid.train.data import load_task_data
    from diseaseid.train.trainer import evaluate_logits, predict_logits

    set_threads(args)
    try:
        model, card = load_ensemble(args.weights)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    if card["task"] != args.task:
        raise SystemExit(f"the weights are for {card['task']}, not {args.task}")
    _, val, _ = load_task_data(args.task)
    members = list(model.members) if isinstance(model, LogitEnsemble) else [model]
    logits = np.stack([predict_logits(m, val.images) for m in members])
    keys = ("accuracy", "balanced_accuracy", "macro_f1", "nll")
    report = {"task": args.task, "n": len(val), "members": [], "ensemble": None}
    for path, member_logits in zip(args.weights, logits):
        metrics = evaluate_logits(member_logits, val)
        report["members"].append({"file": path, **{k: round(metrics[k], 4) for k in keys}})
    metrics = evaluate_logits(logits.mean(0), val)
    report["ensemble"] = {"version": card["version"], **{k: round(metrics[k], 4) for k in keys},
                          "errors": int(round((1 - metrics["accuracy"]) * len(val)))}
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


def cmd_evaluate(args) -> int:
    from diseaseid.data.dataset import ImageFolder
    from diseaseid.tasks import get_task
    from diseaseid.train.data import load_task_data
    from diseaseid.train.trainer import evaluate_logits

    predictor = load_predictor(args)
    if args.data:
        ds = ImageFolder.scan(args.data, get_task(args.task))
    else:
        _, ds, _ = load_task_data(args.task)
    logits = predictor.batched_logits(ds.images)  # through the runtime that serves it (--runtime)
    temperature = 1.0 if args.uncalibrated else predictor.temperature
    report = {"task": args.task, "model": predictor.name, "version": predictor.version,
              "runtime": predictor.runtime.name,
              "data": str(ds.root), "temperature": temperature, **evaluate_logits(logits, ds, temperature)}
    probs = torch.softmax(torch.from_numpy(logits) / temperature, 1).numpy()
    report["predictions"] = [
        {"file": f, "label": ds.task.classes[y], "predicted": ds.task.classes[int(p.argmax())],
         "probabilities": {c: round(float(v), 5) for c, v in zip(ds.task.classes, p)}}
        for f, y, p in zip(ds.files, ds.labels, probs)]
    summary = {k: v for k, v in report.items() if not isinstance(v, (list, dict)) or k == "classes_absent"}
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
        print("report:", args.out)
    return 0
