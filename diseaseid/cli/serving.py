"""``diseaseid predict`` (one image through a model), ``diseaseid calibrate`` (refit a shipped model's
temperature and OOD threshold) and ``diseaseid export`` (the served graphs of the shipped models)."""
from __future__ import annotations

import argparse
import json

from diseaseid.cli.common import load_predictor, model_args, set_threads
from diseaseid.paths import ROLES
from diseaseid.percent import percent
from diseaseid.tasks import TASKS


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
    if not pred.is_diagnosis:  # no class, no percentage: nothing to misread as one; --json keeps them for tools
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
    from diseaseid.serving.predictor import shipped_weights
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
    from diseaseid.serving.predictor import shipped_weights
    from diseaseid.train.pipeline import recalibrate

    set_threads(args)
    result = recalibrate(args.weights or shipped_weights(args.task, args.model))
    print(json.dumps(result, indent=1))
    return 0
