"""Fitting the OOD checks: a task's feature statistics and their threshold (``fit_task``, behind
``diseaseid ood-fit``), and the energy threshold every model card carries (``energy_summary``, at packaging).

    python -m diseaseid ood-fit --task tumor dementia [--train-sample 1500] [--max-mri-flagged 0.015] \
        [--rank 64] [--image-weight 0.5]
    python -m diseaseid ood-fit --table          # the docs/ood.md table from the shipped statistics

For each task: the detector model (``detector_of(task)``, the tumor student for both tasks) embeds a seeded
sample of the task's training slices and all of its validation slices (cached under runs/ood-features/, keyed
by the model's version); class means and the shared within-class covariance are fitted on the training sample
(``FeatureDetector``); the threshold is the lowest distance that, with the image checks, flags at most
``--max-mri-flagged`` of the validation slices. The non-MRI images of ``diseaseid.ood.images`` are only measured, never
fitted on. Writes ``weights/<task>/ood.safetensors`` and ``ood.json`` (statistics, threshold, the detector's
version and every figure below). Rerun it whenever the detector model is replaced: the service ignores
statistics fitted on another version of it (and falls back to the energy score).

The energy fallback: every packaged model's card holds, under ``ood``, the energy threshold that flags at most
5% of its validation slices (1% for the dementia models fitted on every subject; image checks included) and
what that threshold makes of the calibration set of non-MRI images; the service uses it only where no feature
statistics fit the task's detector.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from diseaseid.ood.detector import (
    IMAGE_STATISTICS,
    STATS_STEM,
    FeatureDetector,
    detector_of,
    energy_score,
    image_checks,
    image_statistics,
)
from diseaseid.tasks import TASKS, get_task

MAX_MRI_FLAGGED = 0.015
TRAIN_SAMPLE = 1500
RANK = 64
# The image statistics' squared distance is scaled to the feature distance's by the ratio of their medians on
# the training sample, times IMAGE_WEIGHT: 0.5 flagged the most calibration images at the same MRI rate
# (tumor: 96.1% against 94.2% at 1, 93.2% at 2; features alone 81.6%). Chosen on the calibration set only, on the
# tumor teacher's features (2026-12-03). 0 fits no image statistics: the features alone decide (the tumor task
# since 2026-12-05: the noise-tuned student's features alone flag more calibration images, docs/ood.md).
IMAGE_WEIGHT = 0.5
# The threshold is also the lowest at which the distance flags no more than MAX_CHANGE_FLAGGED of the slices under
# any realistic acquisition change (diseaseid.robustness.perturbations) that the image checks pass, measured on
# CHANGE_SAMPLE training slices the statistics were not fitted on (not the validation slices, which the robustness
# benchmark measures). One perturbed copy per slice gives each of the 24 changes 1/24 of the clean-and-perturbed
# budget, so a change that moves a few slices far (dementia, gamma 1.25: 14.7% flagged by that rule alone) stayed
# invisible to it. 0 turns the rule off.
MAX_CHANGE_FLAGGED = 0.01
CHANGE_SAMPLE = 300
# Group splits of the validation set behind ``cross_fitted_rates``: one split moves the estimate by a few
# slices either way (tumor, one split: 0.35-0.70% for scores whose 20-split mean is 0.35%).
CROSS_FIT_SPLITS = 20

# (image folder, seed) -> (the perturbed slices, N x 224 x 224 x 3 uint8; the name of each one's change)
Perturb = Callable[..., tuple[np.ndarray, list[str]]]
# change name -> (image folder, seed) -> every slice under that change, decoded as served (N x 224 x 224 x 3 uint8)
Changes = dict[str, Callable[..., np.ndarray]]


def fit_statistics(features: np.ndarray, labels: np.ndarray, rank: int = RANK) -> dict:
    """Class means and the shared within-class covariance, as its ``rank`` leading eigenpairs plus the mean of
    the other eigenvalues (the maximum-likelihood PPCA fit, Tipping & Bishop 1999)."""
    x = features.astype(np.float64)
    classes = np.unique(labels)
    means = np.stack([x[labels == c].mean(0) for c in classes])
    centred = x - means[np.searchsorted(classes, labels)]
    cov = centred.T @ centred / len(x)
    values, vectors = np.linalg.eigh(cov)
    values, vectors = values[::-1], vectors[:, ::-1]
    rank = min(rank, len(values) - 1)
    rest = max(float(values[rank:].mean()), 1e-12)
    return {"means": means, "basis": vectors[:, :rank], "variances": np.maximum(values[:rank], rest),
            "residual_variance": rest, "classes": classes.tolist()}


def flag_threshold(scores: np.ndarray, checked: np.ndarray, max_flagged: float) -> float:
    """The lowest threshold at which image checks or ``scores > threshold`` flag at most ``max_flagged`` of
    the slices."""
    allowed = int(np.floor(max_flagged * len(scores))) - int(checked.sum())
    passed = np.sort(scores[~checked])[::-1]
    if len(passed) == 0:
        return float(scores.max())
    return float(passed[min(max(allowed, 0), len(passed) - 1)])


def change_threshold(by_change: dict[str, tuple[np.ndarray, np.ndarray]], max_flagged: float
                     ) -> tuple[float, str | None, dict[str, float]]:
    """The lowest threshold at which the distance flags no more than ``max_flagged`` of any change's slices that
    the image checks pass: ``by_change`` maps a change to its slices' (scores, checked). Slices the image checks
    flag are left out (no threshold unflags them; counting them would only push the threshold up for nothing).
    Returns the threshold (-inf for no change), the change that sets it, and each change's own threshold."""
    own = {name: flag_threshold(scores[~checked], np.zeros(int((~checked).sum()), bool), max_flagged)
           for name, (scores, checked) in by_change.items() if (~checked).any()}
    if not own:
        return -np.inf, None, {}
    binding = max(own, key=own.get)
    return own[binding], binding, own


def energy_threshold(energy: np.ndarray, checked: np.ndarray, max_flagged: float) -> float:
    """``flag_threshold`` for energies, except where the image checks alone use up the budget: then the highest
    energy of all the slices (not only of those the checks pass), so the energy flags no validation slice and
    nothing less unusual than the most unusual of them."""
    if int(np.floor(max_flagged * len(energy))) - int(checked.sum()) <= 0:
        return float(energy.max())
    return flag_threshold(energy, checked, max_flagged)


def energy_summary(val_images: np.ndarray, val_logits: np.ndarray, logits_of: Callable[[np.ndarray], np.ndarray],
                   max_mri_flagged: float = 0.05) -> dict:
    """A model card's ``ood``: the energy threshold (Liu et al. 2020) that, with the image checks, flags at most
    ``max_mri_flagged`` of the validation slices ``val_images`` (``val_logits``: the model's logits of them), and
    what it makes of the calibration set of non-MRI images (``ood.images``, decoded as uploads are), whose logits
    ``logits_of(images)`` computes (the trainer's ``predict_logits`` of the model)."""
    from diseaseid.data.preprocess import to_uint8_rgb
    from diseaseid.ood.images import non_mri

    energy = energy_score(torch.from_numpy(val_logits)).numpy()
    val_checked = np.array([bool(image_checks(x)) for x in val_images])
    threshold = energy_threshold(energy, val_checked, max_mri_flagged)
    others = non_mri("calibration")
    other_images = np.stack([to_uint8_rgb(x) for x in others.values()])
    other_energy = energy_score(torch.from_numpy(logits_of(other_images))).numpy()
    other_flags = np.array([bool(image_checks(x)) for x in other_images]) | (other_energy > threshold)
    return {
        "method": "image checks (colour, flat, noise, bright background) + energy score > threshold",
        "threshold": threshold,
        "val_mri_flagged": float((val_checked | (energy > threshold)).mean()),
        "non_mri_set": "calibration",
        "non_mri_flagged": float(other_flags.mean()),
        "non_mri_n": len(others),
        "non_mri_missed": [k for k, f in zip(others, other_flags) if not f],
        "max_mri_flagged": max_mri_flagged,
        "non_mri_flagged_by_energy_alone": float((other_energy > threshold).mean()),
    }


def cross_fitted_rate(scores: np.ndarray, checked: np.ndarray, groups: list[str], max_flagged: float,
                      seed: int = 0, floor: float = -np.inf) -> float:
    """The share of MRI slices flagged when the threshold comes from the *other* half of the validation groups
    (subjects, or near-copy groups): an estimate for slices the threshold never saw. ``floor``: the threshold is
    at least this (the change rule's, which does not depend on the validation slices)."""
    names = sorted(set(groups))
    rng = np.random.default_rng(seed)
    half = set(rng.permutation(names)[: len(names) // 2].tolist())
    a = np.array([g in half for g in groups])
    rates = []
    for fit, test in ((a, ~a), (~a, a)):
        t = max(flag_threshold(scores[fit], checked[fit], max_flagged), floor)
        rates.append(float((checked[test] | (scores[test] > t)).mean()))
    return float(np.mean(rates))


def cross_fitted_rates(scores: np.ndarray, checked: np.ndarray, perturbed_scores: np.ndarray,
                       perturbed_checked: np.ndarray, groups: list[str], max_flagged: float,
                       splits: int = CROSS_FIT_SPLITS, floor: float = -np.inf) -> tuple[float, float]:
    """(clean, perturbed) share of validation slices flagged when the threshold is fitted as ``fit_task`` fits it
    (clean and perturbed slices together, at most ``max_flagged``) on one half of the groups and measured on the
    other half, both ways, averaged over ``splits`` seeded random halvings: the shipped rule's rates on slices its
    threshold never saw. ``perturbed_*``: the perturbed copy of each validation slice, in the same order;
    ``floor``: the threshold is at least this (the change rule's, fitted on other slices)."""
    names = sorted(set(groups))
    g = np.asarray(groups)
    clean, perturbed = [], []
    for seed in range(splits):
        half = np.isin(g, np.random.default_rng(seed).permutation(names)[: len(names) // 2])
        for fit, test in ((half, ~half), (~half, half)):
            t = max(flag_threshold(np.concatenate([scores[fit], perturbed_scores[fit]]),
                                   np.concatenate([checked[fit], perturbed_checked[fit]]), max_flagged), floor)
            clean.append(float((checked[test] | (scores[test] > t)).mean()))
            perturbed.append(float((perturbed_checked[test] | (perturbed_scores[test] > t)).mean()))
    return float(np.mean(clean)), float(np.mean(perturbed))


def _slug(name: str) -> str:
    """A change's name as a cache-key part: ``gamma:1.25`` -> ``gamma-1.25``, ``noise:sigma 4`` -> ``noise-sigma4``."""
    return "".join(c if c.isalnum() or c in ".-" else "-" if c == ":" else "" for c in name)


def _sha(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:12]


def fit_task(task_name: str, perturb: Perturb, train_sample: int = TRAIN_SAMPLE, max_flagged: float = MAX_MRI_FLAGGED,
             rank: int = RANK, seed: int = 0, out_dir: Path | None = None,
             detector_model: tuple[str, str] | None = None, image_weight: float = IMAGE_WEIGHT,
             changes: Changes | None = None, max_change_flagged: float = MAX_CHANGE_FLAGGED,
             change_sample: int = CHANGE_SAMPLE) -> FeatureDetector:
    """``perturb(ds, seed)``: each slice of the image folder ``ds`` under one random realistic acquisition change,
    decoded as served, and each change's name (``diseaseid.robustness.evaluate.perturbed_images``, which the
    command passes). ``detector_model``: (task, role) of the shipped model whose features to fit on; default the task's
    detector (``detector_of``). Another one is for comparing detectors (``--detector``, with ``--out``): the
    service uses statistics only where their model is the task's detector. ``image_weight``: the image statistics'
    weight relative to the features (``IMAGE_WEIGHT``); 0 fits none, and the features alone decide. ``changes``:
    the realistic acquisition changes (``diseaseid.robustness.evaluate.change_images`` per change, which the command
    passes); with ``max_change_flagged`` the threshold is raised until none of them flags more than that share of
    ``change_sample`` training slices left out of the fit (``change_threshold``)."""
    from diseaseid.data.dataset import ImageFolder
    from diseaseid.data.preprocess import to_uint8_rgb
    from diseaseid.ood.features import cached_features_and_logits
    from diseaseid.ood.images import SETS, family, non_mri
    from diseaseid.paths import fixtures_dir, split_path, task_data_dir, weights_dir
    from diseaseid.serving.predictor import Predictor, shipped_weights

    task = get_task(task_name)
    det_task, det_role = detector_model or detector_of(task_name)
    detector = Predictor.from_weights(shipped_weights(det_task, det_role))
    version = detector.version
    split = json.loads(split_path(task_name).read_text())
    data = ImageFolder.scan(task_data_dir(task), task)
    train_files = split["train"]
    if train_sample and len(train_files) > train_sample:
        train_files = sorted(np.random.default_rng(seed).choice(train_files, train_sample, replace=False).tolist())

    def embed(ds, key):
        return cached_features_and_logits(detector.model, version, f"{task_name}-{key}-{ds.images_key()}",
                                          lambda: ds.images)[0]

    train, val = data.select(train_files), data.select(split["val"])
    print(f"{task_name}: detector {detector.name} {version}; {len(train)} training and {len(val)} validation "
          "slices, each also under one random realistic acquisition change", flush=True)
    # A real MRI with scanner noise, another field of view or window is still an MRI: the statistics are fitted
    # on each training slice and one perturbed copy of it, and the threshold is set on clean and perturbed
    # validation slices together (``perturb``: diseaseid.robustness.perturbations, the realistic levels).
    train_perturbed, _ = perturb(train, seed)
    val_perturbed, val_perturbed_names = perturb(val, seed + 1)
    train_feats = np.concatenate([embed(train, "train"), cached_features_and_logits(
        detector.model, version, f"{task_name}-train-perturbed-{seed}-{train.images_key()}",
        lambda: train_perturbed)[0]])
    train_labels = np.concatenate([train.labels, train.labels])
    stats = fit_statistics(train_feats, train_labels, rank)
    features_only = FeatureDetector(stats["means"], stats["basis"], stats["variances"],
                                    stats["residual_variance"], threshold=np.inf, card={})
    image_mean = image_precision = None
    weight = 0.0
    if image_weight:
        train_stats = np.stack([image_statistics(x) for x in (*train.images, *train_perturbed)])
        image_mean = train_stats.mean(0)
        image_precision = np.linalg.inv(np.cov(train_stats.T) + 1e-6 * np.eye(train_stats.shape[1]))
        diff = train_stats - image_mean
        train_image_d2 = np.einsum("ij,jk,ik->i", diff, image_precision, diff)
        weight = image_weight * float(np.median(features_only.feature_distance2(train_feats))
                                      / np.median(train_image_d2))
    probe = FeatureDetector(stats["means"], stats["basis"], stats["variances"], stats["residual_variance"],
                            threshold=np.inf, card={}, image_mean=image_mean, image_precision=image_precision,
                            image_weight=weight)
    val_feats = embed(val, "val")
    val_scores = probe.score(val_feats, val.images)
    val_checked = np.array([bool(image_checks(x)) for x in val.images])
    pert_feats = cached_features_and_logits(
        detector.model, version, f"{task_name}-val-perturbed-{seed + 1}-{val.images_key()}",
        lambda: val_perturbed)[0]
    pert_scores = probe.score(pert_feats, val_perturbed)
    pert_checked = np.array([bool(image_checks(x)) for x in val_perturbed])
    clean_rule = flag_threshold(np.concatenate([val_scores, pert_scores]),
                                np.concatenate([val_checked, pert_checked]), max_flagged)
    spare_files = sorted(set(split["train"]) - set(train_files))
    if change_sample and len(spare_files) > change_sample:
        spare_files = sorted(np.random.default_rng(seed + 2).choice(spare_files, change_sample, replace=False).tolist())
    change_scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if changes and max_change_flagged and spare_files:
        spare = data.select(spare_files)
        for k, (name, change) in enumerate(changes.items()):
            draw = seed * 1000 + k
            images = change(spare, draw)
            feats = cached_features_and_logits(detector.model, version,
                                               f"{task_name}-spare-{_slug(name)}-{draw}-{spare.images_key()}",
                                               lambda images=images: images)[0]
            change_scores[name] = (probe.score(feats, images), np.array([bool(image_checks(x)) for x in images]))
    elif changes and max_change_flagged:
        print(f"{task_name}: every training slice is fitted on (--train-sample 0): no slices left for the change "
              "rule, which is off", flush=True)
    floor, binding, own = change_threshold(change_scores, max_change_flagged)
    threshold = max(clean_rule, floor)
    pert_flagged = pert_checked | (pert_scores > threshold)
    by_change: dict[str, list[int]] = {}
    by_family: dict[str, list[int]] = {}
    for name, f in zip(val_perturbed_names, pert_flagged):
        for key, counts in ((name, by_change), (name.split(":")[0], by_family)):
            counts.setdefault(key, [0, 0])
            counts[key][0] += int(f)
            counts[key][1] += 1
    groups = [str(split["group_of"][f]) for f in split["val"]] if isinstance(split.get("group_of"), dict) \
        else list(val.subjects)
    cross_clean, cross_perturbed = cross_fitted_rates(val_scores, val_checked, pert_scores, pert_checked, groups,
                                                      max_flagged, floor=floor)
    fixtures = ImageFolder.scan(fixtures_dir() / task_name, task)
    fixture_scores = probe.score(detector.features_and_logits(fixtures.images)[0], fixtures.images)
    fixture_flags = np.array([bool(image_checks(x)) for x in fixtures.images]) | (fixture_scores > threshold)

    non_mri_report = {}
    for which in SETS:
        images = non_mri(which)
        stack = np.stack([to_uint8_rgb(x) for x in images.values()])  # as an upload of it is decoded
        feats = cached_features_and_logits(detector.model, version, f"nonmri-{which}-{_sha(stack)}",
                                           lambda stack=stack: stack)[0]
        scores = probe.score(feats, stack)
        checked = np.array([bool(image_checks(x)) for x in stack])
        flagged = checked | (scores > threshold)
        families: dict[str, list[int]] = {}
        for name, f in zip(images, flagged):
            families.setdefault(family(name), [0, 0])
            families[family(name)][0] += int(f)
            families[family(name)][1] += 1
        non_mri_report[which] = {
            "n": len(stack), "flagged": float(flagged.mean()), "by_image_checks": float(checked.mean()),
            "by_distance": float((scores > threshold).mean()),
            "missed": [n for n, f in zip(images, flagged) if not f],
            "min_margin": float(np.min(scores[~checked]) / threshold) if (~checked).any() else None,
            "families": {k: f"{v[0]}/{v[1]}" for k, v in sorted(families.items())}}
    command = ("python -m diseaseid ood-fit --task " + task_name
               + (f" --train-sample {train_sample}" if train_sample != TRAIN_SAMPLE else "")
               + (f" --max-mri-flagged {max_flagged}" if max_flagged != MAX_MRI_FLAGGED else "")
               + (f" --rank {rank}" if rank != RANK else "")
               + (f" --image-weight {image_weight:g}" if image_weight != IMAGE_WEIGHT else "")
               + (f" --detector {det_task}/{det_role}" if (det_task, det_role) != detector_of(task_name) else "")
               + (f" --max-change-flagged {max_change_flagged:g}" if max_change_flagged != MAX_CHANGE_FLAGGED else "")
               + (f" --change-sample {change_sample}" if change_sample != CHANGE_SAMPLE else ""))
    feature_part = ("the Mahalanobis distance of the detector's pooled penultimate features to the nearest class "
                    "mean of the task's training slices and their perturbed copies (shared within-class covariance "
                    f"in PPCA form, rank {stats['basis'].shape[1]})")
    method = (f"sqrt(d_f^2 + w d_i^2): d_f {feature_part}, d_i that of the image statistics "
              f"({', '.join(IMAGE_STATISTICS)}) to their training mean, w = {image_weight:g} x the ratio of their "
              "training medians" if image_weight else f"d_f: {feature_part}; no image statistics")
    card = {
        "method": method + "; flagged above the threshold, or by an image check",
        "detector": {"task": det_task, "role": det_role, "name": detector.name, "version": version},
        "task": task_name, "classes": [task.classes[c] for c in stats["classes"]],
        "fitted_on": {"train_slices": len(train), "train_perturbed_copies": len(train_perturbed),
                      "rank": int(stats["basis"].shape[1]), "image_weight": image_weight,
                      "train_sample_seed": seed,
                      "train_fingerprint": train.fingerprint(), "val_slices": len(val),
                      "val_fingerprint": val.fingerprint(), "max_mri_flagged": max_flagged},
        "threshold_rule": {
            "clean_and_perturbed_validation": clean_rule,
            "changes": None if not change_scores else {
                "max_flagged": max_change_flagged, "slices": len(spare_files),
                "slices_from": "training slices the statistics were not fitted on (seeded sample)",
                "threshold": floor, "set_by": binding,
                "per_change": {name: float(t) for name, t in own.items()},
                "flagged_at_threshold": {name: f"{int((c | (sc > threshold)).sum())}/{len(sc)}"
                                         for name, (sc, c) in change_scores.items()}},
            "binding": "changes" if floor > clean_rule else "clean_and_perturbed_validation"},
        "val_mri_flagged": float((val_checked | (val_scores > threshold)).mean()),
        "val_mri_flagged_by_image_checks": float(val_checked.mean()),
        "val_perturbed_mri_flagged": float(pert_flagged.mean()),
        "val_perturbed_mri_flagged_by_change": {k: f"{v[0]}/{v[1]}" for k, v in sorted(by_change.items())},
        "val_perturbed_mri_flagged_by_family": {k: f"{v[0]}/{v[1]}" for k, v in sorted(by_family.items())},
        "val_mri_flagged_cross_fitted": cross_fitted_rate(val_scores, val_checked, groups, max_flagged, seed, floor),
        # the shipped rule (threshold on clean + perturbed slices) cross-fitted over CROSS_FIT_SPLITS halvings
        "val_mri_flagged_cross_fitted_splits": cross_clean,
        "val_perturbed_mri_flagged_cross_fitted_splits": cross_perturbed,
        "cross_fit_splits": CROSS_FIT_SPLITS,
        "val_distance_percentiles": {str(q): float(v) for q, v in
                                     zip((50, 95, 99, 100), np.percentile(val_scores, [50, 95, 99, 100]))},
        "fixtures_flagged": [f for f, x in zip(fixtures.files, fixture_flags) if x],
        "fixtures_n": len(fixtures),
        "non_mri": non_mri_report,
        "command": command,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    fitted = FeatureDetector(stats["means"], stats["basis"], stats["variances"], stats["residual_variance"],
                             threshold, card, image_mean=image_mean, image_precision=image_precision,
                             image_weight=weight)
    fitted.save((out_dir or weights_dir()) / task_name / STATS_STEM)
    return fitted


def fitted_cards(weights: Path) -> dict[str, dict]:
    """task -> its ``ood.json`` under ``weights``, for the tasks that have one, in name order."""
    paths = {task: weights / task / f"{STATS_STEM}.json" for task in sorted(TASKS)}
    return {task: json.loads(path.read_text()) for task, path in paths.items() if path.exists()}


def table(weights: Path) -> str:
    """The docs/ood.md table, from the shipped ``ood.json`` files."""
    rows = ["| task | detector (version) | threshold | val MRI flagged (cross-fitted: one split / many) | "
            "perturbed val MRI flagged (worst family) | fixtures flagged | non-MRI flagged: calibration | held-out | "
            "held-out missed |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for task, c in fitted_cards(weights).items():
        cal, held = c["non_mri"]["calibration"], c["non_mri"]["heldout"]
        cross = f"{c['val_mri_flagged_cross_fitted']:.1%}"
        if "val_mri_flagged_cross_fitted_splits" in c:  # cards fitted since 2026-12-05 (issue 24)
            cross += f" / {c['val_mri_flagged_cross_fitted_splits']:.2%} of {c['cross_fit_splits']}"
        families = c.get("val_perturbed_mri_flagged_by_family", {})
        worst = max(families, key=lambda k: _share(families[k]), default=None)
        worst_text = (f" ({worst} {families[worst]})" if worst and _share(families[worst]) > 0
                      else " (none)" if worst else "")
        rows.append(
            f"| {task} | {c['detector']['name']} ({c['detector']['version']}) | {c['threshold']:.1f} | "
            f"{c['val_mri_flagged']:.1%} of {c['fitted_on']['val_slices']} ({cross}) | "
            f"{c['val_perturbed_mri_flagged']:.1%}{worst_text} | "
            f"{len(c['fixtures_flagged'])}/{c['fixtures_n']} | {cal['flagged']:.1%} of {cal['n']} | "
            f"{held['flagged']:.1%} of {held['n']} | {', '.join(held['missed']) or '-'} |")
    return "\n".join(rows)


def _share(count: str) -> float:
    """"3/48" -> 0.0625."""
    flagged, n = count.split("/")
    return int(flagged) / int(n) if int(n) else 0.0


def kinds_table(weights: Path, which: str = "heldout") -> str:
    """Flagged / all per kind of non-MRI image of the ``which`` set and task, from the shipped ``ood.json``."""
    cards = fitted_cards(weights)
    kinds = sorted({k for c in cards.values() for k in c["non_mri"][which]["families"]})
    rows = ["| kind | " + " | ".join(cards) + " |", "|---|" + "---:|" * len(cards)]
    rows += [f"| {kind} | " + " | ".join(c["non_mri"][which]["families"].get(kind, "-") for c in cards.values())
             + " |" for kind in kinds]
    return "\n".join(rows)
