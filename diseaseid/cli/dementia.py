"""``diseaseid ship-dementia``: fit the cross-validated dementia slice and study heads on every subject, write
them with their CV figures, and ship them (``diseaseid.train.dementia_models``)."""
from __future__ import annotations

import json

from diseaseid.cli.common import set_threads
from diseaseid.train.dementia_models import STUDY_BACKBONES, STUDY_HEADS


def register(sub) -> None:
    p = sub.add_parser("ship-dementia", help="fit the cross-validated dementia slice and study heads on every "
                                             "subject and write them with their CV figures")
    p.add_argument("--study-head", default="slice-linear", choices=sorted(STUDY_HEADS))
    p.add_argument("--study-backbone", default="teacher", choices=STUDY_BACKBONES,
                   help="the slice model whose embeddings the study head reads (slice-linear: its own classifier, "
                        "geometric mean over the slices)")
    p.add_argument("--augmented", type=int, nargs="?", const=1, default=0, choices=(0, 1, 3), metavar="COPIES",
                   help="fit the slice classifiers on every slice and COPIES perturbed copies of it, 1 when "
                        "given alone (cross-validated as slice-linear-aug[3] and student-slice-linear-aug[3])")
    p.add_argument("--study-only", action="store_true",
                   help="fit the study head alone, over the shipped slice model (--study-backbone) as it is")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="runs/dementia-ship")
    p.add_argument("--ship", action="store_true", help="copy to weights/dementia/")
    p.set_defaults(func=cmd_ship_dementia)


def cmd_ship_dementia(args) -> int:
    from diseaseid.train.dementia_models import fit_dementia_models, fit_study_head_only, ship

    set_threads(args)
    if args.study_only:
        written = fit_study_head_only(args.out, args.study_head, args.study_backbone, args.folds, args.repeats)
    else:
        written = fit_dementia_models(args.out, args.study_head, args.augmented, args.folds, args.repeats,
                                      args.study_backbone)
    for role, path in written.items():
        print(role, path, json.dumps(json.loads(path.with_suffix(".json").read_text())["metrics"]["cv"]
                                     .get("balanced_accuracy_3")))
    if args.ship:
        print("shipped to", ship(written))
    return 0
