"""``diseaseid ood-fit``: fit the OOD statistics and threshold of tasks on their detector's features, or print the
table of the shipped fits (``diseaseid.ood.fit``; docs/ood.md)."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from diseaseid.ood.fit import (
    CHANGE_SAMPLE,
    IMAGE_WEIGHT,
    MAX_CHANGE_FLAGGED,
    MAX_MRI_FLAGGED,
    RANK,
    TRAIN_SAMPLE,
    fit_task,
    kinds_table,
    table,
)
from diseaseid.paths import ROLES, weights_dir
from diseaseid.tasks import TASKS


def register(sub) -> None:
    p = sub.add_parser("ood-fit", help="fit the OOD statistics and threshold of tasks (weights/<task>/ood.*)")
    p.add_argument("--task", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    p.add_argument("--train-sample", type=int, default=TRAIN_SAMPLE,
                   help="training slices to fit on (a seeded sample; 0: all)")
    p.add_argument("--max-mri-flagged", type=float, default=MAX_MRI_FLAGGED,
                   help="the share of validation MRI slices the threshold may flag (image checks included)")
    p.add_argument("--max-change-flagged", type=float, default=MAX_CHANGE_FLAGGED,
                   help="the share of slices under any one realistic acquisition change the threshold may flag, "
                        "measured on training slices left out of the fit (0: no such rule)")
    p.add_argument("--change-sample", type=int, default=CHANGE_SAMPLE,
                   help="training slices left out of the fit that the change rule measures (a seeded sample)")
    p.add_argument("--rank", type=int, default=RANK, help="principal directions of the covariance kept")
    p.add_argument("--image-weight", type=float, default=IMAGE_WEIGHT,
                   help="weight of the image statistics' distance relative to the features' (0: features alone)")
    p.add_argument("--detector", type=detector_arg, default=None, metavar="TASK/ROLE",
                   help="fit on this shipped model's features instead of the task's detector (to compare "
                        "detectors; write with --out)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=None, help="weights directory to write to (default: weights/)")
    p.add_argument("--table", action="store_true", help="only print the docs/ood.md table of the shipped fits")
    p.set_defaults(func=cmd_ood_fit)


def detector_arg(value: str) -> tuple[str, str]:
    """``--detector TASK/ROLE`` -> (task, role) of a shipped model."""
    task, _, role = value.partition("/")
    if task not in TASKS or role not in ROLES:
        raise argparse.ArgumentTypeError(f"{value!r}: expected TASK/ROLE, TASK one of {', '.join(sorted(TASKS))}, "
                                         f"ROLE one of {', '.join(ROLES)}")
    return task, role


def cmd_ood_fit(args: argparse.Namespace) -> int:
    from functools import partial

    from diseaseid.robustness.evaluate import change_images, perturbed_images
    from diseaseid.robustness.perturbations import realistic

    if not args.table:
        torch.set_num_threads(args.threads)
        changes = {p.name: partial(change_images, perturbation=p) for p in realistic()}
        for task in args.task:
            fitted = fit_task(task, perturbed_images, args.train_sample, args.max_mri_flagged, args.rank,
                              out_dir=args.out, detector_model=args.detector, image_weight=args.image_weight,
                              changes=changes, max_change_flagged=args.max_change_flagged,
                              change_sample=args.change_sample)
            c = fitted.card
            print(f"  threshold {fitted.threshold:.2f}; val MRI flagged {c['val_mri_flagged']:.1%} (cross-fitted "
                  f"{c['val_mri_flagged_cross_fitted']:.1%}, over {c['cross_fit_splits']} splits "
                  f"{c['val_mri_flagged_cross_fitted_splits']:.2%}); perturbed {c['val_perturbed_mri_flagged']:.1%}; "
                  "non-MRI flagged: "
                  + ", ".join(f"{k} {v['flagged']:.1%} of {v['n']}" for k, v in c["non_mri"].items()), flush=True)
            rule = c["threshold_rule"]
            if rule["changes"]:
                ch = rule["changes"]
                print(f"  threshold rules: clean + perturbed validation {rule['clean_and_perturbed_validation']:.2f}, "
                      f"at most {ch['max_flagged']:.0%} of {ch['slices']} spare training slices under any change "
                      f"{ch['threshold']:.2f} (set by {ch['set_by']}); binding: {rule['binding']}")
            for which, v in c["non_mri"].items():
                print(f"  {which} missed: {', '.join(v['missed']) or '-'}")
    weights = args.out or weights_dir()
    print(table(weights))
    print()
    print(kinds_table(weights))
    return 0
