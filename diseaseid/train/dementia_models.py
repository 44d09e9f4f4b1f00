"""``diseaseid ship-dementia``: fit the cross-validated dementia heads on every subject and ship them.

- teacher (``/predict``, one slice): EfficientNet-Lite0 with its ImageNet features frozen and a logistic-
  regression classifier fitted on every training slice (no class weights: served probabilities carry the
  training prior, so the 2-subject ModerateDemented class is rarely said).
- student: the shipped ConvNet1's convolutions, frozen, with its classifier refitted the same way.
- study head (``/predict/study``): a pooled head over the teacher's slice embeddings (mean over the stack, or
  slab means), linear or ordinal, as chosen by ``--study-head``.

Every figure in their cards is cross-validated (subject-grouped, stratified, ``diseaseid cv``): out-of-fold
predictions of the same recipe, never of the shipped fit itself. Temperature scaling is fitted on those
out-of-fold predictions too.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from diseaseid.tasks import get_task

# --study-head choices: name in diseaseid.train.subject_heads.HEADS -> (PooledHead kind, slabs, L2 strength)
STUDY_HEADS = {"slice-linear": ("slices", 1, 100.0), "mean-linear": ("linear", 1, 30.0),
               "mean-ordinal": ("ordinal", 1, 30.0), "slab4-ordinal": ("ordinal", 4, 100.0),
               "slab4-linear": ("linear", 4, 100.0)}


def cv_split(result: dict) -> dict:
    """A card's ``split``: the cross-validation ``result`` (of :func:`diseaseid.train.cv.cross_validate`) was
    run with, read from the result itself."""
    return {"file": None, "cv": {"folds": result["folds"], "repeats": result["repeats"],
                                 "seed": result.get("seed", 0), "grouped_by": "subject",
                                 "stratified_by": "class (ModerateDemented with MildDemented)"},
            "note": f"fitted on all {result['subjects']} subjects; figures are out-of-fold predictions of the "
                    "same recipe"}


OOD_MRI_FLAGGED = 0.01


def register(sub) -> None:
    p = sub.add_parser("ship-dementia", help="fit the cross-validated dementia slice and study heads on every "
                                             "subject and write them with their CV figures")
    p.add_argument("--study-head", default="slice-linear", choices=sorted(STUDY_HEADS))
    p.add_argument("--augmented", action="store_true",
                   help="fit the slice classifiers on every slice and one perturbed copy of it "
                        "(cross-validated as slice-linear-aug and student-slice-linear-aug)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="runs/dementia-ship")
    p.add_argument("--ship", action="store_true", help="copy to weights/dementia/")
    p.set_defaults(func=cmd_ship_dementia)


def _cv_summary(result: dict) -> dict:
    keep = ("balanced_accuracy_3", "accuracy", "screening_auc", "screening_sensitivity_at_90_specificity",
            "max_wrong_class_share", "moderate_said_for_normal", "slice_balanced_accuracy_3",
            "slice_moderate_said_for_normal", "pooled", "folds", "repeats", "subjects")
    return {k: result[k] for k in keep if k in result}


def _oof_slice_report(result: dict, bags, classes) -> tuple[dict, np.ndarray, np.ndarray]:
    """Slice-level out-of-fold report (the card's ``metrics.validation``), its log-probabilities and labels."""
    from diseaseid.train.metrics import classification_report

    probs = result["oof_slice_probabilities"].reshape(-1, len(classes))
    labels = np.repeat(bags.labels, result["oof_slice_probabilities"].shape[1])
    report = classification_report(probs, labels, classes)
    return report, np.log(np.clip(probs, 1e-9, 1)), labels


def _slice_model_card(role: str, arch: str, ds, bags, result: dict, logits: np.ndarray, labels: np.ndarray,
                      model: torch.nn.Module, recipe: str, l2: float) -> dict:
    from diseaseid.train.calibration import calibration_summary
    from diseaseid.train.pipeline import ood_summary
    from diseaseid.train.trainer import predict_logits

    report, _, _ = _oof_slice_report(result, bags, ds.task.classes)
    calib = calibration_summary(logits, labels)
    in_sample = predict_logits(model, ds.images)
    return {
        "task": "dementia", "role": role, "arch": arch, "arch_args": {}, "classes": list(ds.task.classes),
        "training": {"recipe": recipe, "l2": l2, "class_weights": "none", "n_train": len(ds),
                     "subjects": len(bags.subjects), "device": "cpu",
                     "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")},
        "metrics": {
            "validation": {**{k: report[k] for k in ("n", "accuracy", "balanced_accuracy", "macro_f1",
                                                      "per_class", "confusion_matrix") if k in report},
                           "subject_balanced_accuracy": result["balanced_accuracy_3"]["mean"],
                           "note": f"out-of-fold predictions of {result['folds']}-fold x {result['repeats']} "
                                   "subject-grouped CV over all subjects (the shipped fit saw every subject)"},
            "cv": _cv_summary(result)},
        "calibration": {**calib, "fitted_on": "out-of-fold slice predictions"},
        "ood": {**ood_summary(model, ds, in_sample, max_mri_flagged=OOD_MRI_FLAGGED),
                "note": "threshold from the shipped model's energies on its own training slices, set to flag 1% "
                        "of them: the energy of a linear head over frozen features flags no non-MRI image by "
                        "itself, the image checks flag them all, so a 5% threshold would only cost real slices"},
        "split": cv_split(result),
        "data_fingerprint": ds.fingerprint(),
        "command": "python -m diseaseid ship-dementia --ship",
    }


def cmd_ship_dementia(args) -> int:
    from diseaseid.models import create_model, load_model, save_model
    from diseaseid.paths import weights_dir
    from diseaseid.train.calibration import calibration_summary
    from diseaseid.train.cv import cross_validate
    from diseaseid.train.cv_cli import load_bags
    from diseaseid.train.subject_heads import HEADS, LinearHead, OrdinalHead, slab_means

    if args.threads:
        torch.set_num_threads(args.threads)
    task = get_task("dementia")
    ds, bags = load_bags("dementia")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = {}

    def cv(name):
        r = cross_validate(bags, HEADS[name][1], task.classes, args.folds, args.repeats, return_slices=True)
        print(f"{name}: subject bal.acc3 {r['balanced_accuracy_3']['mean']:.3f} {r['balanced_accuracy_3']['ci95']}"
              f"  AUC {r['screening_auc']['mean']:.3f}", flush=True)
        return r

    # The teacher: ImageNet Lite0 + a slice classifier.
    result = teacher_result = cv("slice-linear-aug" if args.augmented else "slice-linear")
    x = np.concatenate([b["final"] for b in bags.bags])
    y = np.repeat(bags.labels, [len(b["final"]) for b in bags.bags])
    if args.augmented:  # every slice and one copy under a random realistic acquisition change
        head = LinearHead(l2=100.0).fit(np.concatenate([x, np.concatenate([b["final_aug"] for b in bags.bags])]),
                                        np.concatenate([y, y]))
    else:
        head = LinearHead(l2=100.0).fit(x, y)
    teacher = create_model("lite0", num_classes=task.num_classes, pretrained=True).eval()
    with torch.no_grad():
        teacher.classifier.weight.copy_(torch.from_numpy(head.weight).float())
        teacher.classifier.bias.copy_(torch.from_numpy(head.bias).float())
    _, logits, labels = _oof_slice_report(result, bags, task.classes)
    card = _slice_model_card("teacher", "lite0", ds, bags, result, logits, labels, teacher,
                             "ImageNet EfficientNet-Lite0 frozen; logistic regression on each slice's pooled "
                             "1280-d features" + (" and on those of one copy of it under a random realistic "
                                                  "acquisition change" if args.augmented else ""), 100.0)
    if args.augmented:
        card["command"] += " --augmented"
    written["teacher"] = save_model(teacher, out / "teacher", card, dtype=torch.float32)

    # The student: the shipped ConvNet1's convolutions + a refitted classifier.
    if "student" in bags.bags[0]:
        result = cv("student-slice-linear-aug" if args.augmented else "student-slice-linear")
        xs = np.concatenate([b["student"] for b in bags.bags])
        if args.augmented:  # as the teacher's: every slice and one perturbed copy of it
            xa = np.concatenate([b["student_aug"] for b in bags.bags])
            head = LinearHead(l2=1000.0).fit(np.concatenate([xs, xa]), np.concatenate([y, y]))
        else:
            head = LinearHead(l2=1000.0).fit(xs, y)
        student, old = load_model(weights_dir() / "dementia" / "student.safetensors")
        with torch.no_grad():
            student.classifier.weight.copy_(torch.from_numpy(head.weight).float())
            student.classifier.bias.copy_(torch.from_numpy(head.bias).float())
        _, logits, labels = _oof_slice_report(result, bags, task.classes)
        card = _slice_model_card("student", old["arch"], ds, bags, result, logits, labels, student.eval(),
                                 f"the ConvNet1 of {old.get('version')} with its convolutions frozen; its "
                                 "classifier refitted by logistic regression on every slice"
                                 + (" and on one copy of it under a random realistic acquisition change"
                                    if args.augmented else ""), 1000.0)
        card["arch_args"] = old.get("arch_args", {})
        written["student"] = save_model(student, out / "student", card)

    # The study head over the teacher's embeddings.
    kind, slabs, l2 = STUDY_HEADS[args.study_head]
    result = teacher_result if args.study_head == "slice-linear" else cv(args.study_head)
    bag_x = np.stack([slab_means(b["final"], slabs) for b in bags.bags])
    head_model = create_model("pooled_head", num_classes=task.num_classes, in_features=1280, slabs=slabs, kind=kind)
    with torch.no_grad():
        if kind == "slices":  # the teacher's own slice classifier, geometric mean over the stack
            head_model.linear.weight.copy_(teacher.classifier.weight)
            head_model.linear.bias.copy_(teacher.classifier.bias)
        elif kind == "linear":
            fit = LinearHead(l2=l2).fit(bag_x, bags.labels)
            head_model.linear.weight.copy_(torch.from_numpy(fit.weight).float())
            head_model.linear.bias.copy_(torch.from_numpy(fit.bias).float())
        else:
            fit = OrdinalHead(l2=l2).fit(bag_x, bags.labels)
            head_model.weight.copy_(torch.from_numpy(fit.weight).float())
            head_model.thresholds.copy_(torch.from_numpy(fit.thresholds).float())
    teacher_card = json.loads(written["teacher"].with_suffix(".json").read_text())
    card = {"task": "dementia", "role": "mil", "arch": "pooled_head",
            "arch_args": {"in_features": 1280, "slabs": slabs, "kind": kind}, "classes": list(task.classes),
            "backbone": {"file": "teacher.safetensors", "version": teacher_card["version"],
                         "sha256": teacher_card["weights_sha256"]},
            "training": {"recipe": HEADS[args.study_head][0], "l2": l2, "subjects": len(bags.subjects)},
            "metrics": {"validation": {"balanced_accuracy": result["balanced_accuracy_3"]["mean"],
                                       "note": "3-class subject-level balanced accuracy, out-of-fold CV"},
                        "cv": _cv_summary(result)},
            "calibration": {**calibration_summary(np.log(np.clip(result["oof_probabilities"], 1e-9, 1)),
                                                  bags.labels),
                            "fitted_on": "out-of-fold subject predictions"},
            "split": cv_split(result),
            "data_fingerprint": ds.fingerprint(), "command": f"python -m diseaseid ship-dementia --study-head "
                                                            f"{args.study_head} --ship"}
    written["mil"] = save_model(head_model, out / "mil", card, dtype=torch.float32)
    for role, path in written.items():
        print(role, path, json.dumps(json.loads(path.with_suffix(".json").read_text())["metrics"]["cv"]
                                     .get("balanced_accuracy_3")))
    if args.ship:
        dest = weights_dir() / "dementia"
        for role, path in written.items():
            for suffix in (".safetensors", ".json"):
                shutil.copy(path.with_suffix(suffix), dest / f"{role}{suffix}")
            for plot in ("curve", "confusion"):  # plots of the CNN-trained models no longer describe them
                (dest / f"{role}-{plot}.png").unlink(missing_ok=True)
        print("shipped to", dest)
    return 0
