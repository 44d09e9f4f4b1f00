"""``diseaseid predict`` (one image through a model) and ``diseaseid calibrate`` (refit a shipped model's
temperature and OOD threshold); ``model_args``/``load_predictor``: how every command picks a model."""
from __future__ import annotations

import argparse
import json

import torch

from diseaseid.percent import percent
from diseaseid.serving.predictor import ROLES, Predictor, shipped_weights
from diseaseid.tasks import TASKS


def model_args(p: argparse.ArgumentParser) -> None:
    """``--task`` and ``--threads``, then ``--weights FILE`` or ``--model ROLE`` (a shipped model)."""
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--weights", default=None)
    g.add_argument("--model", choices=ROLES, default="student")


def load_predictor(args: argparse.Namespace) -> Predictor:
    """The model ``model_args`` chose, with ``--threads`` applied."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.weights:
        return Predictor.from_weights(args.weights)
    return Predictor.from_shipped(args.task, args.model)


def register(sub) -> None:
    p = sub.add_parser("predict", help="predict one image")
    p.add_argument("image")
    model_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("calibrate", help="recompute temperature and OOD threshold of shipped weights in place")
    model_args(p)
    p.set_defaults(func=cmd_calibrate)


def cmd_predict(args: argparse.Namespace) -> int:
    from diseaseid.data.preprocess import decode_image

    predictor = load_predictor(args)
    pred = predictor.predict([decode_image(args.image)])[0]
    if args.json:
        print(json.dumps({"model": predictor.name, **pred.to_dict()}, indent=1, ensure_ascii=False))
        return 0
    if not pred.is_diagnosis:  # no class, no percentage (issue 25); --json keeps the probabilities for tools
        print(f"{pred.display_en}: no diagnosis  [{predictor.name}]")
        print("  why: " + "; ".join(pred.ood_reasons))
        return 0
    print(f"{pred.display_en} ({pred.label})  [{predictor.name}]")
    for c, p in sorted(pred.probabilities.items(), key=lambda kv: -kv[1]):
        print(f"  {c:<18} {percent(p, 1):>6} {'#' * int(round(p * 30))}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    # Refitting is a training step (validation split, temperature search); only this command needs it.
    from diseaseid.train.pipeline import recalibrate

    if args.threads:
        torch.set_num_threads(args.threads)
    result = recalibrate(args.weights or shipped_weights(args.task, args.model))
    print(json.dumps(result, indent=1))
    return 0
