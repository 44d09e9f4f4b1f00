"""Options several commands share: the task, torch's CPU threads, and which model (``model_args``, read back by
``load_predictor``)."""
from __future__ import annotations

import argparse

import torch

from diseaseid.paths import ROLES
from diseaseid.tasks import TASKS


def task_and_threads(p: argparse.ArgumentParser) -> None:
    """``--task`` (required) and ``--threads``."""
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` when given (torch's default otherwise)."""
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


def model_args(p: argparse.ArgumentParser) -> None:
    """``--task`` and ``--threads``, then ``--weights FILE`` or ``--model ROLE`` (a shipped model)."""
    from diseaseid.serving.runtime import RUNTIMES

    task_and_threads(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--weights", default=None)
    g.add_argument("--model", choices=ROLES, default="student")
    p.add_argument("--runtime", choices=("auto", *RUNTIMES), default=None,
                   help="what runs the network (default: $DISEASEID_RUNTIME, else auto: ONNX Runtime on a CPU)")


def load_predictor(args: argparse.Namespace):
    """The model ``model_args`` chose (a ``diseaseid.serving.Predictor``), with ``--threads`` and ``--runtime``
    applied."""
    from diseaseid.serving.predictor import Predictor

    set_threads(args)
    runtime = getattr(args, "runtime", None)
    if args.weights:
        return Predictor.from_weights(args.weights, runtime=runtime)
    return Predictor.from_shipped(args.task, args.model, runtime=runtime)
