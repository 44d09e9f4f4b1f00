"""``diseaseid cv``: compare the dementia heads by subject-grouped cross-validation over all subjects."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from diseaseid.cli.common import set_threads
from diseaseid.tasks import TASKS


def register(sub) -> None:
    from diseaseid.train.subject_heads import HEADS

    p = sub.add_parser("cv", help="subject-grouped stratified k-fold CV of subject-level heads on cached "
                                  "slice embeddings")
    p.add_argument("--task", default="dementia", choices=sorted(n for n, t in TASKS.items() if t.subject_level))
    p.add_argument("--data", default=None, help="image-folder root (default: the shared data set)")
    p.add_argument("--heads", default="all", help=f"comma-separated, from: {', '.join(HEADS)}")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="docs/dementia-cv", help="writes cv.json and cv.md here")
    p.set_defaults(func=cmd_cv)


def cmd_cv(args) -> int:
    from diseaseid.train.cv import ci_text, cross_validate, load_bags, markdown_table
    from diseaseid.train.subject_heads import HEADS

    set_threads(args)
    names = list(HEADS) if args.heads == "all" else args.heads.split(",")
    unknown = [n for n in names if n not in HEADS]
    if unknown:
        raise SystemExit(f"unknown heads {unknown}; choose from {', '.join(HEADS)}")
    copies = 3 if any(n.endswith("-aug3") for n in names) else 1  # perturbed copies the heads read
    ds, bags = load_bags(args.task, args.data, copies=copies)
    counts = np.bincount(bags.labels, minlength=ds.task.num_classes)
    print(f"[{args.task}] {len(bags.subjects)} subjects {dict(zip(ds.task.classes, counts.tolist()))}; "
          f"{args.folds}-fold x {args.repeats}, grouped by subject, stratified", flush=True)
    results = {}
    for name in names:
        r = cross_validate(bags, HEADS[name][1], ds.task.classes, args.folds, args.repeats, args.seed)
        r.pop("oof_probabilities")
        results[name] = r
        print(f"{name:26s} bal.acc3 {ci_text(r['balanced_accuracy_3'])}  AUC {ci_text(r['screening_auc'], False)}  "
              f"sens@90spec {ci_text(r['screening_sensitivity_at_90_specificity'])}  max wrong "
              f"{ci_text(r['max_wrong_class_share'])}  normal->moderate {ci_text(r['moderate_said_for_normal'])}  "
              f"({r['seconds']} s)", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cv.json").write_text(json.dumps({"task": args.task, "folds": args.folds, "repeats": args.repeats,
                                             "seed": args.seed, "data_fingerprint": ds.fingerprint(),
                                             "results": results}, indent=1) + "\n")
    (out / "cv.md").write_text(markdown_table(results, HEADS))
    print("wrote", out / "cv.json", out / "cv.md")
    return 0
