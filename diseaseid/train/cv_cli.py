"""``diseaseid cv``: compare the dementia heads by subject-grouped cross-validation over all subjects."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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


def load_bags(task: str, data: str | None = None):
    """Every subject of the task's data set with its cached embeddings (ImageNet Lite0 final and mid-level,
    both joined as ``all``, and the CSF features)."""
    from diseaseid.data.dataset import ImageFolder
    from diseaseid.paths import task_data_dir, weights_dir
    from diseaseid.tasks import get_task
    from diseaseid.train.cv import subject_bags
    from diseaseid.train.embeddings import (
        cached_embeddings,
        cached_model_embeddings,
        cached_perturbed_embeddings,
        cached_perturbed_model_embeddings,
    )
    from diseaseid.train.subject_heads import csf_features

    t = get_task(task)
    ds = ImageFolder.scan(data or task_data_dir(t), t)
    feats = cached_embeddings(ds)
    feats = {**feats, "all": np.concatenate([feats["final"], feats["mid"]], 1), "csf": csf_features(ds.images),
             "final_aug": cached_perturbed_embeddings(ds)}
    student = weights_dir() / task / "student.safetensors"
    if student.exists():  # the shipped ConvNet1's convolutional features (its head may be refitted on them)
        feats["student"] = cached_model_embeddings(ds, student)
        feats["student_aug"] = cached_perturbed_model_embeddings(ds, student)
    return ds, subject_bags(ds, feats)


def _fmt(m: dict, pct: bool = True) -> str:
    f = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:.3f}")
    s = f"{f(m['mean'])}"
    if "ci95" in m:
        s += f" [{f(m['ci95'][0])}, {f(m['ci95'][1])}]"
    return s


def markdown_table(results: dict, heads: dict) -> str:
    rows = ["| head | subject bal. acc. (3 classes) [95% CI] | screening ROC AUC [95% CI] | sens. at 90% spec. "
            "| most subjects of one class said to be another | normal subjects said moderate | slice bal. acc. "
            "| normal slices said moderate |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        sl = r.get("slice_balanced_accuracy_3")
        sm = r.get("slice_moderate_said_for_normal")
        rows.append(f"| `{name}` | {_fmt(r['balanced_accuracy_3'])} | {_fmt(r['screening_auc'], False)} | "
                    f"{_fmt(r['screening_sensitivity_at_90_specificity'])} | {_fmt(r['max_wrong_class_share'])} | "
                    f"{_fmt(r['moderate_said_for_normal'])} | {_fmt(sl) if sl else '-'} | "
                    f"{_fmt(sm) if sm else '-'} |")
    rows.append("")
    rows += [f"- `{name}`: {heads[name][0]}" for name in results]
    return "\n".join(rows) + "\n"


def cmd_cv(args) -> int:
    import torch

    from diseaseid.train.cv import cross_validate
    from diseaseid.train.subject_heads import HEADS

    if args.threads:
        torch.set_num_threads(args.threads)
    names = list(HEADS) if args.heads == "all" else args.heads.split(",")
    unknown = [n for n in names if n not in HEADS]
    if unknown:
        raise SystemExit(f"unknown heads {unknown}; choose from {', '.join(HEADS)}")
    ds, bags = load_bags(args.task, args.data)
    counts = np.bincount(bags.labels, minlength=ds.task.num_classes)
    print(f"[{args.task}] {len(bags.subjects)} subjects {dict(zip(ds.task.classes, counts.tolist()))}; "
          f"{args.folds}-fold x {args.repeats}, grouped by subject, stratified", flush=True)
    results = {}
    for name in names:
        r = cross_validate(bags, HEADS[name][1], ds.task.classes, args.folds, args.repeats, args.seed)
        r.pop("oof_probabilities")
        results[name] = r
        print(f"{name:26s} bal.acc3 {_fmt(r['balanced_accuracy_3'])}  AUC {_fmt(r['screening_auc'], False)}  "
              f"sens@90spec {_fmt(r['screening_sensitivity_at_90_specificity'])}  max wrong "
              f"{_fmt(r['max_wrong_class_share'])}  normal->moderate {_fmt(r['moderate_said_for_normal'])}  "
              f"({r['seconds']} s)", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cv.json").write_text(json.dumps({"task": args.task, "folds": args.folds, "repeats": args.repeats,
                                             "seed": args.seed, "data_fingerprint": ds.fingerprint(),
                                             "results": results}, indent=1) + "\n")
    (out / "cv.md").write_text(markdown_table(results, HEADS))
    print("wrote", out / "cv.json", out / "cv.md")
    return 0
