"""``diseaseid predict`` (one image through a model), ``diseaseid calibrate`` (refit a shipped model's
temperature and OOD threshold) and ``diseaseid export`` (the served graphs of the shipped models);
``model_args``/``load_predictor``: how every command picks a model."""
from __future__ import annotations

import argparse
import json

import torch

from diseaseid.percent import percent
from diseaseid.serving.predictor import ROLES, Predictor, shipped_weights
from diseaseid.serving.runtime import RUNTIMES
from diseaseid.tasks import TASKS


def model_args(p: argparse.ArgumentParser) -> None:
    """``--task`` and ``--threads``, then ``--weights FILE`` or ``--model ROLE`` (a shipped model)."""
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--weights", default=None)
    g.add_argument("--model", choices=ROLES, default="student")
    p.add_argument("--runtime", choices=("auto", *RUNTIMES), default=None,
                   help="what runs the network (default: $DISEASEID_RUNTIME, else auto: ONNX Runtime on a CPU)")


def load_predictor(args: argparse.Namespace) -> Predictor:
    """The model ``model_args`` chose, with ``--threads`` and ``--runtime`` applied."""
    if args.threads:
        torch.set_num_threads(args.threads)
    runtime = getattr(args, "runtime", None)
    if args.weights:
        return Predictor.from_weights(args.weights, runtime=runtime)
    return Predictor.from_shipped(args.task, args.model, runtime=runtime)


def register(sub) -> None:
    p = sub.add_parser("predict", help="predict one image")
    p.add_argument("image")
    model_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("calibrate", help="recompute temperature and OOD threshold of shipped weights in place")
    model_args(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("export", help="export the shipped models' served graphs (ONNX) into the cache, checked "
                                      "against PyTorch; prints each graph's path and sha256")
    p.add_argument("weights", nargs="*", help=".safetensors files (default: every shipped student, teacher and "
                                               "subject-level head)")
    p.add_argument("--force", action="store_true", help="export again even when the cache holds the graph")
    p.set_defaults(func=cmd_export)


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


def cmd_export(args: argparse.Namespace) -> int:
    from diseaseid.cards import read_card
    from diseaseid.serving.export import cached_graph, export_graph, export_head
    from diseaseid.serving.study import shipped_mil

    paths = list(args.weights)
    if not paths:
        for task in sorted(TASKS):
            for role in ROLES:
                try:
                    paths.append(shipped_weights(task, role))
                except FileNotFoundError:
                    pass
            if (head := shipped_mil(task)) is not None:  # the subject-level head's graph too
                paths.append(head)
    for path in paths:
        head = read_card(path).get("role") == "mil"
        if args.force:
            graph = export_head(path) if head else export_graph(path)
        else:
            graph = cached_graph(path, head=head)
        info = graph.info
        print(json.dumps({"weights": str(path), "weights_sha256": info["weights_sha256"], "graph": str(graph.path),
                          "graph_sha256": info["graph_sha256"], "bytes": info["graph_bytes"],
                          "max_abs_diff_vs_torch": info["max_abs_diff_vs_torch"]}))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    # Refitting is a training step (validation split, temperature search); only this command needs it.
    from diseaseid.train.pipeline import recalibrate

    if args.threads:
        torch.set_num_threads(args.threads)
    result = recalibrate(args.weights or shipped_weights(args.task, args.model))
    print(json.dumps(result, indent=1))
    return 0
