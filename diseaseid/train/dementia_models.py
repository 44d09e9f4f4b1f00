"""The dementia models fitted on every subject, with cross-validated cards (``diseaseid ship-dementia``).

- teacher (``/predict``, one slice): EfficientNet-Lite0 with its ImageNet features frozen and a logistic-
  regression classifier fitted on every training slice (no class weights: served probabilities carry the
  training prior, so the 2-subject ModerateDemented class is rarely said).
- student: the shipped ConvNet1's convolutions, frozen, with its classifier refitted the same way.
- study head (``/predict/study``): a pooled head over a slice model's embeddings, as chosen by ``--study-head``
  and ``--study-backbone``: ``slice-linear`` is that model's own classifier read over the stack (the teacher's
  until 2026-12-06, the student's since); the others (mean over the stack, or slab means, linear or ordinal) read
  the teacher's.

Every figure in their cards is cross-validated (subject-grouped, stratified, ``diseaseid cv``): out-of-fold
predictions of the same recipe, never of the shipped fit itself. Temperature scaling is fitted on those
out-of-fold predictions too.
"""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import torch

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


def _augmented_head(name: str, copies: int) -> str:
    """The cross-validated head fitted beside ``copies`` perturbed copies: ``slice-linear`` (0),
    ``slice-linear-aug`` (1), ``slice-linear-aug3`` (3); likewise for ``student-slice-linear``."""
    return name + {0: "", 1: "-aug"}.get(copies, f"-aug{copies}")


def _copies_text(copies: int) -> str:
    if copies == 0:
        return ""
    if copies == 1:
        return " and on one copy of it under a random realistic acquisition change"
    return f" and on {copies} copies of it, each under its own random realistic acquisition change"


def _fit_beside_copies(bags, key: str, copies: int, l2: float):
    """A logistic-regression head fitted on every slice's ``key`` features and on those of its ``copies``
    perturbed copies."""
    from diseaseid.train.embeddings import perturbed_key
    from diseaseid.train.subject_heads import LinearHead

    x = np.concatenate([b[key] for b in bags.bags])
    y = np.repeat(bags.labels, [len(b[key]) for b in bags.bags])
    xs = [x] + [np.concatenate([b[perturbed_key(key, i)] for b in bags.bags]) for i in range(copies)]
    return LinearHead(l2=l2).fit(np.concatenate(xs), np.tile(y, copies + 1))


def _slice_model_card(role: str, arch: str, ds, bags, result: dict, logits: np.ndarray, labels: np.ndarray,
                      model: torch.nn.Module, recipe: str, l2: float, copies: int = 0) -> dict:
    from diseaseid.ood.fit import energy_summary
    from diseaseid.train.calibration import calibration_summary
    from diseaseid.train.trainer import predict_logits

    report, _, _ = _oof_slice_report(result, bags, ds.task.classes)
    calib = calibration_summary(logits, labels)
    in_sample = predict_logits(model, ds.images)
    return {
        "task": "dementia", "role": role, "arch": arch, "arch_args": {}, "classes": list(ds.task.classes),
        "training": {"recipe": recipe, "l2": l2, "perturbed_copies": copies, "class_weights": "none",
                     "n_train": len(ds),
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
        "ood": {**energy_summary(ds.images, in_sample, lambda x: predict_logits(model, x),
                                max_mri_flagged=OOD_MRI_FLAGGED),
                "note": "threshold from the shipped model's energies on its own training slices, set to flag 1% "
                        "of them: the energy of a linear head over frozen features flags no non-MRI image by "
                        "itself, the image checks flag them all, so a 5% threshold would only cost real slices"},
        "split": cv_split(result),
        "data_fingerprint": ds.fingerprint(),
        "command": "python -m diseaseid ship-dementia --ship",
    }


def _cross_validated(bags, name: str, classes, folds: int, repeats: int) -> dict:
    """``cross_validate`` of the ``HEADS`` recipe ``name`` with its slice predictions, its figures printed."""
    from diseaseid.train.cv import cross_validate
    from diseaseid.train.subject_heads import HEADS

    r = cross_validate(bags, HEADS[name][1], classes, folds, repeats, return_slices=True)
    print(f"{name}: subject bal.acc3 {r['balanced_accuracy_3']['mean']:.3f} {r['balanced_accuracy_3']['ci95']}"
          f"  AUC {r['screening_auc']['mean']:.3f}", flush=True)
    return r


def fit_teacher(ds, bags, out: Path, copies: int = 0, folds: int = 5, repeats: int = 3
                ) -> tuple[Path, torch.nn.Module, dict]:
    """ImageNet Lite0 + a slice classifier fitted on every slice (and on ``copies`` perturbed copies of each),
    written to ``out/teacher.*``: (its weights, the model, its cross-validation result)."""
    from diseaseid.models import create_model, save_model

    task = ds.task
    result = _cross_validated(bags, _augmented_head("slice-linear", copies), task.classes, folds, repeats)
    head = _fit_beside_copies(bags, "final", copies, l2=100.0)
    teacher = create_model("lite0", num_classes=task.num_classes, pretrained=True).eval()
    with torch.no_grad():
        teacher.classifier.weight.copy_(torch.from_numpy(head.weight).float())
        teacher.classifier.bias.copy_(torch.from_numpy(head.bias).float())
    _, logits, labels = _oof_slice_report(result, bags, task.classes)
    card = _slice_model_card("teacher", "lite0", ds, bags, result, logits, labels, teacher,
                             "ImageNet EfficientNet-Lite0 frozen; logistic regression on each slice's pooled "
                             "1280-d features" + _copies_text(copies), 100.0, copies)
    if copies:
        card["command"] += f" --augmented {copies}"
    return save_model(teacher, out / "teacher", card, dtype=torch.float32), teacher, result


def fit_student(ds, bags, out: Path, copies: int = 0, folds: int = 5, repeats: int = 3
                ) -> tuple[Path, torch.nn.Module, dict] | None:
    """The shipped ConvNet1's convolutions + a classifier refitted on every slice (and on ``copies`` perturbed
    copies of each), written to ``out/student.*``: (its weights, the model, its cross-validation result); None
    where the bags hold no student embeddings (no shipped student)."""
    from diseaseid.models import load_model, save_model
    from diseaseid.paths import weights_dir

    if "student" not in bags.bags[0]:
        return None
    task = ds.task
    result = _cross_validated(bags, _augmented_head("student-slice-linear", copies), task.classes, folds, repeats)
    head = _fit_beside_copies(bags, "student", copies, l2=1000.0)
    student, old = load_model(weights_dir() / "dementia" / "student.safetensors")
    with torch.no_grad():
        student.classifier.weight.copy_(torch.from_numpy(head.weight).float())
        student.classifier.bias.copy_(torch.from_numpy(head.bias).float())
    _, logits, labels = _oof_slice_report(result, bags, task.classes)
    card = _slice_model_card("student", old["arch"], ds, bags, result, logits, labels, student.eval(),
                             f"the ConvNet1 of {old.get('version')} with its convolutions frozen; its "
                             "classifier refitted by logistic regression on every slice" + _copies_text(copies),
                             1000.0, copies)
    card["arch_args"] = old.get("arch_args", {})
    return save_model(student, out / "student", card), student, result


def _study_recipe(study_head: str, kind: str, backbone_card: dict) -> str:
    """The study head's recipe: for ``slices`` the backbone's own slice classifier (fitted as its card says)."""
    from diseaseid.train.subject_heads import HEADS

    if kind == "slices":
        return f"the {backbone_card['role']}'s slice classifier ({backbone_card['training']['recipe']}); subject = " \
               "geometric mean of its slices"
    return HEADS[study_head][0]


STUDY_BACKBONES = ("teacher", "student")


def _check_backbone(study_backbone: str) -> None:
    if study_backbone not in STUDY_BACKBONES:
        raise ValueError(f"study_backbone must be one of {STUDY_BACKBONES}, not {study_backbone!r}")


def fit_study_head(ds, bags, out: Path, study_head: str, backbone: torch.nn.Module, backbone_path: Path,
                   backbone_result: dict, folds: int = 5, repeats: int = 3, command: str | None = None) -> Path:
    """The study head (``STUDY_HEADS[study_head]``) over a slice model's embeddings (``backbone``, written at
    ``backbone_path``: the teacher or the student), written to ``out/mil.*``; ``slice-linear`` reuses that model's
    own classifier and its cross-validation result (``backbone_result``). The pooled heads other than
    ``slice-linear`` read the teacher's embeddings only. ``command``: what the card records as its command (default:
    the ``ship-dementia`` that fits every model)."""
    from diseaseid.cards import read_card
    from diseaseid.models import create_model, save_model
    from diseaseid.train.calibration import calibration_summary
    from diseaseid.train.subject_heads import LinearHead, OrdinalHead, slab_means

    task = ds.task
    kind, slabs, l2 = STUDY_HEADS[study_head]
    backbone_card = read_card(backbone_path)
    if kind != "slices" and backbone_card["role"] != "teacher":
        raise ValueError(f"the {study_head} study head reads the teacher's embeddings; over the "
                         f"{backbone_card['role']} only slice-linear is fitted")
    result = backbone_result if study_head == "slice-linear" else _cross_validated(bags, study_head, task.classes,
                                                                                   folds, repeats)
    in_features = backbone.classifier.in_features if kind == "slices" else 1280
    head_model = create_model("pooled_head", num_classes=task.num_classes, in_features=in_features, slabs=slabs,
                              kind=kind)
    # the pooled heads read the teacher's embeddings, as means over the stack (or its slabs)
    bag_x = None if kind == "slices" else np.stack([slab_means(b["final"], slabs) for b in bags.bags])
    with torch.no_grad():
        if kind == "slices":  # the backbone's own slice classifier, geometric mean over the stack
            head_model.linear.weight.copy_(backbone.classifier.weight)
            head_model.linear.bias.copy_(backbone.classifier.bias)
        elif kind == "linear":
            fit = LinearHead(l2=l2).fit(bag_x, bags.labels)
            head_model.linear.weight.copy_(torch.from_numpy(fit.weight).float())
            head_model.linear.bias.copy_(torch.from_numpy(fit.bias).float())
        else:
            fit = OrdinalHead(l2=l2).fit(bag_x, bags.labels)
            head_model.weight.copy_(torch.from_numpy(fit.weight).float())
            head_model.thresholds.copy_(torch.from_numpy(fit.thresholds).float())
    card = {"task": "dementia", "role": "mil", "arch": "pooled_head",
            "arch_args": {"in_features": in_features, "slabs": slabs, "kind": kind}, "classes": list(task.classes),
            "backbone": {"file": f"{backbone_card['role']}.safetensors", "version": backbone_card["version"],
                         "sha256": backbone_card["weights_sha256"]},
            # slice-linear is the backbone's own classifier: its L2 strength is the backbone's
            "training": {"recipe": _study_recipe(study_head, kind, backbone_card),
                         "l2": backbone_card["training"]["l2"] if kind == "slices" else l2,
                         "subjects": len(bags.subjects)},
            "metrics": {"validation": {"balanced_accuracy": result["balanced_accuracy_3"]["mean"],
                                       "note": "3-class subject-level balanced accuracy, out-of-fold CV"},
                        "cv": _cv_summary(result)},
            "calibration": {**calibration_summary(np.log(np.clip(result["oof_probabilities"], 1e-9, 1)),
                                                  bags.labels),
                            "fitted_on": "out-of-fold subject predictions"},
            "split": cv_split(result),
            "data_fingerprint": ds.fingerprint(),
            "command": command or f"python -m diseaseid ship-dementia --study-head {study_head} --study-backbone "
                                  f"{backbone_card['role']} --ship"}
    return save_model(head_model, out / "mil", card, dtype=torch.float32)


def fit_dementia_models(out: str | Path, study_head: str = "slice-linear", copies: int = 0, folds: int = 5,
                        repeats: int = 3, study_backbone: str = "teacher") -> dict[str, Path]:
    """Fit the teacher, the student (where one is shipped) and the study head on every subject, with their
    cross-validated cards, into ``out``: role -> weights written. ``copies``: perturbed copies of every slice
    the slice classifiers are fitted beside (0, 1 or 3); ``study_backbone``: the slice model whose embeddings the
    study head reads (``STUDY_BACKBONES``)."""
    from diseaseid.train.cv import load_bags

    _check_backbone(study_backbone)
    ds, bags = load_bags("dementia", copies=copies)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fitted = {"teacher": fit_teacher(ds, bags, out, copies, folds, repeats)}
    student = fit_student(ds, bags, out, copies, folds, repeats)
    if student is not None:
        fitted["student"] = student
    if study_backbone not in fitted:
        raise ValueError(f"no {study_backbone} to read: the dementia task ships none")
    written = {role: path for role, (path, _, _) in fitted.items()}
    path, model, result = fitted[study_backbone]
    written["mil"] = fit_study_head(ds, bags, out, study_head, model, path, result, folds, repeats)
    return written


def fit_study_head_only(out: str | Path, study_head: str = "slice-linear", study_backbone: str = "teacher",
                        folds: int = 5, repeats: int = 3) -> dict[str, Path]:
    """The study head alone, over the *shipped* slice model ``study_backbone`` (its weights as they are, so the
    head's backbone hash is theirs), with that model's recipe cross-validated again for the head's card and
    calibration; written to ``out/mil.*``."""
    from diseaseid.models import load_model
    from diseaseid.paths import weights_dir
    from diseaseid.train.cv import load_bags

    _check_backbone(study_backbone)
    path = weights_dir() / "dementia" / f"{study_backbone}.safetensors"
    model, card = load_model(path)
    copies = int(card.get("training", {}).get("perturbed_copies", 0))
    ds, bags = load_bags("dementia", copies=copies)
    name = "slice-linear" if study_backbone == "teacher" else "student-slice-linear"
    result = _cross_validated(bags, _augmented_head(name, copies), ds.task.classes, folds, repeats)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    command = (f"python -m diseaseid ship-dementia --study-only --study-head {study_head} --study-backbone "
               f"{study_backbone} --ship")
    return {"mil": fit_study_head(ds, bags, out, study_head, model.eval(), path, result, folds, repeats, command)}


def ship(written: dict[str, Path]) -> Path:
    """Copy each role's weights and card to ``weights/dementia/``; the plots of the CNN-trained models they
    replace go (they no longer describe them). Returns the folder."""
    from diseaseid.paths import weights_dir

    dest = weights_dir() / "dementia"
    for role, path in written.items():
        for suffix in (".safetensors", ".json"):
            shutil.copy(path.with_suffix(suffix), dest / f"{role}{suffix}")
        for plot in ("curve", "confusion"):
            (dest / f"{role}-{plot}.png").unlink(missing_ok=True)
    return dest
