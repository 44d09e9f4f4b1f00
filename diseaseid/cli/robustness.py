"""``diseaseid robustness``: every shipped model under acquisition changes, and where its relevance lies."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from diseaseid.cli.common import set_threads
from diseaseid.tasks import TASKS

RELEVANCE_METHODS = ("lrp", "gradcam", "gradcam++", "hirescam", "gradient")  # diseaseid.explain.maps.MAP_METHODS


def register(sub) -> None:
    p = sub.add_parser("robustness", help="every shipped model under acquisition changes (noise, field of view, "
                                          "intensity, matrix, JPEG, DICOM bit depth, corners): accuracy, answers "
                                          "changed, OOD flags; and the share of relevance inside the head")
    p.add_argument("--task", nargs="+", default=sorted(TASKS), choices=sorted(TASKS))
    p.add_argument("--role", nargs="+", default=["teacher", "student"], choices=["teacher", "student"])
    p.add_argument("--n", type=int, default=300, help="validation slices per task (class-stratified, seeded); 0: "
                                                      "none (with --studies: the whole studies alone)")
    p.add_argument("--relevance-n", type=int, default=300, help="slices per model for the relevance share; 0: skip")
    p.add_argument("--relevance-methods", nargs="+", default=["lrp", "gradcam"], choices=RELEVANCE_METHODS,
                   help="the maps whose share inside the head is measured (the panel's two by default)")
    p.add_argument("--only", nargs="*", default=None, help="perturbation families or names (default: all)")
    p.add_argument("--studies", type=int, default=0, metavar="SUBJECTS",
                   help="also whole studies of this many subjects (class-stratified; -1: every subject) under each "
                        "change, answered by the study head and the student's mean, held out by subject folds "
                        "(tasks with a study head; ~20 s per change for 64 subjects on 2 cores); 0: skip")
    p.add_argument("--study-folds", type=int, default=4, help="subject folds for the held-out study heads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="docs/robustness", help="folder for <task>.json and table.md")
    p.set_defaults(func=cmd_robustness)


def cmd_robustness(args: argparse.Namespace) -> int:
    import numpy as np

    from diseaseid.robustness.evaluate import decode, evaluate_task, load_sample
    from diseaseid.robustness.perturbations import by_name
    from diseaseid.robustness.relevance import relevance_inside_head
    from diseaseid.robustness.report import markdown
    from diseaseid.serving.predictor import Predictor

    set_threads(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for task in args.task:
        if args.n <= 0 and not args.studies:
            raise SystemExit("--n 0 leaves nothing to measure without --studies")
        result = evaluate_task(task, tuple(args.role), args.n, args.seed, by_name(args.only)) if args.n > 0 else {}
        if args.relevance_n and result:
            sample = load_sample(task, args.relevance_n, args.seed + 1)
            images = np.stack([decode(np.clip(np.round(r), 0, 255).astype(np.uint8)) for r in sample.raws])
            result["relevance_inside_head"] = {}
            for role in args.role:
                rel = relevance_inside_head(Predictor.from_shipped(task, role), images, tuple(args.relevance_methods))
                result["relevance_inside_head"][role] = rel
                print(f"{task} {role}: positive relevance inside the head: "
                      + ", ".join(f"{m} {v['mean']:.1%} (min {v['min']:.1%})" for m, v in rel.items()), flush=True)
        if args.studies:
            from diseaseid.robustness.studies import evaluate_studies
            from diseaseid.serving.study import shipped_mil

            if shipped_mil(task) is None:
                print(f"{task}: no study-level head shipped; whole studies skipped", flush=True)
            else:
                result["studies"] = evaluate_studies(task, max(args.studies, 0), args.study_folds, args.seed,
                                                     by_name(args.only))
        (out / f"{task}.json").write_text(json.dumps(result, indent=1) + "\n")
        results[task] = result
    table = markdown(results)
    (out / "table.md").write_text(table)
    print(table)
    return 0
