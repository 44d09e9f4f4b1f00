"""Subject-grouped, stratified k-fold cross-validation of subject-level heads (``diseaseid cv``), and the
subjects' cached embeddings it reads (``load_bags``).

Every subject's slices stay in one fold; folds are stratified by the subject's class; repeats reshuffle.
Heads are fixed recipes (diseaseid.train.subject_heads): nothing is tuned on the folds they are scored on.
Figures: per repeat, the pooled out-of-fold predictions are scored; we report the mean over repeats and a
95% interval from a subject bootstrap of the repeat-averaged out-of-fold probabilities.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from diseaseid.data.dataset import ImageFolder

SCORED = (0, 1, 2)  # NonDemented, VeryMild, Mild: ModerateDemented has 2 subjects, no estimate is possible
NORMAL = 0  # the screening answer: NonDemented vs any stage of impairment


@dataclass
class Bags:
    subjects: list[str]
    labels: np.ndarray  # S
    bags: list[dict]  # per subject: key -> 32 x F, lowest slice first
    slice_index: list[np.ndarray]  # per subject: indices into the data set, lowest slice first


def subject_bags(ds: ImageFolder, features: dict[str, np.ndarray]) -> Bags:
    """Group per-slice ``features`` (name -> N x F) by subject, ordered by slice position."""
    slices = ds.subject_slices()
    return Bags(list(slices), np.array([ds.subject_label(idx) for idx in slices.values()]),
                [{k: v[idx] for k, v in features.items()} for idx in slices.values()], list(slices.values()))


def subject_folds(labels: np.ndarray, folds: int = 5, repeats: int = 3, seed: int = 0):
    """(repeat, train subjects, test subjects) for stratified k-fold over subjects, ``repeats`` reshuffles.
    A class with fewer subjects than folds (ModerateDemented: 2) is spread as far as it goes."""
    for r in range(repeats):
        skf = StratifiedKFold(folds, shuffle=True, random_state=seed + r)
        strata = labels.copy()
        for c in np.unique(labels):  # too small to stratify on its own: ride with the nearest stage
            if (labels == c).sum() < folds:
                strata[labels == c] = c - 1 if c > 0 else c + 1
        for tr, te in skf.split(np.zeros(len(labels)), strata):
            yield r, tr, te


def screening_scores(probs: np.ndarray) -> np.ndarray:
    """P(impaired) = 1 - P(NonDemented)."""
    return 1.0 - probs[:, NORMAL]


def sensitivity_at_specificity(y_impaired: np.ndarray, score: np.ndarray, specificity: float = 0.9) -> float:
    normal = np.sort(score[~y_impaired])
    if len(normal) == 0 or y_impaired.sum() == 0:
        return float("nan")
    threshold = normal[min(len(normal) - 1, int(np.ceil(specificity * len(normal))) - 1)]
    return float((score[y_impaired] > threshold).mean())


def subject_metrics(probs: np.ndarray, labels: np.ndarray, classes) -> dict:
    """3-class balanced accuracy (over the scored classes, any of the 4 predictions allowed), per-class recall,
    the 4 x 4 confusion matrix, the share of each class's subjects said to be each other class, and the
    screening ROC AUC and sensitivity at 90% specificity."""
    pred = probs.argmax(1)
    k = len(classes)
    cm = np.zeros((k, k), int)
    for t, p in zip(labels, pred):
        cm[t, p] += 1
    recall = {classes[c]: float(cm[c, c] / cm[c].sum()) for c in range(k) if cm[c].sum()}
    impaired = labels != NORMAL
    score = screening_scores(probs)
    said = {classes[c]: {classes[d]: float(cm[c, d] / cm[c].sum()) for d in range(k) if d != c}
            for c in SCORED if cm[c].sum()}
    return {
        "balanced_accuracy_3": float(np.mean([recall[classes[c]] for c in SCORED if classes[c] in recall])),
        "accuracy": float((pred == labels).mean()),
        "recall": recall,
        "confusion_matrix": cm.tolist(),
        "wrong_class_share": said,
        "max_wrong_class_share": max(v for row in said.values() for v in row.values()),
        "moderate_said_for_normal": float(cm[NORMAL, 3] / max(cm[NORMAL].sum(), 1)),
        "screening_auc": float(roc_auc_score(impaired, score)) if 0 < impaired.sum() < len(labels) else None,
        "screening_sensitivity_at_90_specificity": sensitivity_at_specificity(impaired, score, 0.9),
    }


def slice_metrics(slice_probs: np.ndarray, labels: np.ndarray) -> dict:
    """Slice-level balanced accuracy over the scored classes and how often a normal slice is called moderate."""
    p = slice_probs.reshape(-1, slice_probs.shape[-1])
    y = np.repeat(labels, slice_probs.shape[1])
    pred = p.argmax(1)
    recalls = [float((pred[y == c] == c).mean()) for c in SCORED if (y == c).any()]
    return {"slice_balanced_accuracy_3": float(np.mean(recalls)),
            "slice_moderate_said_for_normal": float((pred[y == NORMAL] == 3).mean())}


def bootstrap_interval(probs: np.ndarray, labels: np.ndarray, metric, n: int = 1000, seed: int = 0
                       ) -> tuple[float, float]:
    """95% percentile interval of ``metric(probs, labels)`` over subjects resampled within each class."""
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    values = []
    for _ in range(n):
        idx = np.concatenate([rng.choice(ix, len(ix)) for ix in by_class])
        v = metric(probs[idx], labels[idx])
        if v is not None and np.isfinite(v):
            values.append(v)
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def cross_validate(bags: Bags, head, classes, folds: int = 5, repeats: int = 3, seed: int = 0,
                   return_slices: bool = False) -> dict:
    """Run ``head(train_bags, train_labels, test_bags) -> HeadResult`` over subject-grouped folds."""
    y = bags.labels
    s = len(y)
    oof = np.zeros((repeats, s, len(classes)))
    oof_slices = None
    start = time.time()
    for r, tr, te in subject_folds(y, folds, repeats, seed):
        res = head([bags.bags[i] for i in tr], y[tr], [bags.bags[i] for i in te])
        oof[r, te] = res.subject_probs
        if res.slice_probs is not None:
            if oof_slices is None:
                oof_slices = np.zeros((repeats, s, *res.slice_probs.shape[1:]))
            oof_slices[r, te] = res.slice_probs
    per_repeat = [subject_metrics(oof[r], y, classes) for r in range(repeats)]
    mean_probs = oof.mean(0)
    out = {"folds": folds, "repeats": repeats, "seed": seed, "subjects": s, "seconds": round(time.time() - start, 1)}
    for key in ("balanced_accuracy_3", "accuracy", "screening_auc", "screening_sensitivity_at_90_specificity",
                "max_wrong_class_share", "moderate_said_for_normal"):
        vals = np.array([m[key] for m in per_repeat], float)
        out[key] = {"mean": float(vals.mean()), "min": float(vals.min()), "max": float(vals.max())}
    out["balanced_accuracy_3"]["ci95"] = bootstrap_interval(
        mean_probs, y, lambda p, t: subject_metrics(p, t, classes)["balanced_accuracy_3"])
    out["screening_auc"]["ci95"] = bootstrap_interval(
        mean_probs, y, lambda p, t: roc_auc_score(t != NORMAL, screening_scores(p)))
    pooled = subject_metrics(mean_probs, y, classes)
    out["pooled"] = {k: pooled[k] for k in ("recall", "confusion_matrix", "wrong_class_share")}
    if oof_slices is not None:
        sm = [slice_metrics(oof_slices[r], y) for r in range(repeats)]
        for key in sm[0]:
            vals = np.array([m[key] for m in sm])
            out[key] = {"mean": float(vals.mean()), "min": float(vals.min()), "max": float(vals.max())}
    out["oof_probabilities"] = mean_probs
    if return_slices and oof_slices is not None:
        out["oof_slice_probabilities"] = oof_slices.mean(0)
    return out


def load_bags(task: str, data: str | None = None, copies: int = 1):
    """Every subject of the task's data set with its cached embeddings (ImageNet Lite0 final and mid-level,
    both joined as ``all``, and the CSF features), and those of ``copies`` perturbed copies of every slice
    (``final_aug``, ``final_aug_2``, ...; the student's likewise)."""
    from diseaseid.paths import task_data_dir, weights_dir
    from diseaseid.tasks import get_task
    from diseaseid.train.embeddings import (
        PERTURBED_SEEDS,
        cached_embeddings,
        cached_model_embeddings,
        cached_perturbed_embeddings,
        cached_perturbed_model_embeddings,
        perturbed_key,
    )
    from diseaseid.train.subject_heads import csf_features

    t = get_task(task)
    ds = ImageFolder.scan(data or task_data_dir(t), t)
    feats = cached_embeddings(ds)
    feats = {**feats, "all": np.concatenate([feats["final"], feats["mid"]], 1), "csf": csf_features(ds.images)}
    for i in range(copies):
        feats[perturbed_key("final", i)] = cached_perturbed_embeddings(ds, seed=PERTURBED_SEEDS[i])
    student = weights_dir() / task / "student.safetensors"
    if student.exists():  # the shipped ConvNet1's convolutional features (its head may be refitted on them)
        feats["student"] = cached_model_embeddings(ds, student)
        for i in range(copies):
            feats[perturbed_key("student", i)] = cached_perturbed_model_embeddings(ds, student,
                                                                                  seed=PERTURBED_SEEDS[i])
    return ds, subject_bags(ds, feats)


def ci_text(m: dict, pct: bool = True) -> str:
    """``{"mean", "ci95"}`` -> ``"81.2 [77.0, 85.1]"`` (percent), or with three decimals (``pct=False``)."""
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
        rows.append(f"| `{name}` | {ci_text(r['balanced_accuracy_3'])} | {ci_text(r['screening_auc'], False)} | "
                    f"{ci_text(r['screening_sensitivity_at_90_specificity'])} | "
                    f"{ci_text(r['max_wrong_class_share'])} | {ci_text(r['moderate_said_for_normal'])} | "
                    f"{ci_text(sl) if sl else '-'} | {ci_text(sm) if sm else '-'} |")
    rows.append("")
    rows += [f"- `{name}`: {heads[name][0]}" for name in results]
    return "\n".join(rows) + "\n"
