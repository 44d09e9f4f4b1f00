"""Classification metrics on slices and on subjects (mean probability over a subject's slices)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE over equal-width confidence bins (Guo et al. 2017)."""
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs((pred[m] == labels[m]).mean() - conf[m].mean())
    return float(ece)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1)).mean())


def classification_report(probs: np.ndarray, labels: np.ndarray, classes: tuple[str, ...] | list[str]) -> dict:
    """accuracy, balanced accuracy and macro-F1 over the classes present in ``labels``, per-class precision and
    recall, the confusion matrix, ECE and NLL."""
    k = len(classes)
    pred = probs.argmax(1)
    present = sorted(set(labels.tolist()))
    prec, rec, f1, support = precision_recall_fscore_support(labels, pred, labels=list(range(k)), zero_division=0)
    report = {
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()) if len(labels) else float("nan"),
        "balanced_accuracy": float(np.mean([rec[c] for c in present])) if present else float("nan"),
        "macro_f1": float(np.mean([f1[c] for c in present])) if present else float("nan"),
        "per_class": {classes[c]: {"precision": float(prec[c]), "recall": float(rec[c]),
                                   "f1": float(f1[c]), "support": int(support[c])} for c in range(k)},
        "confusion_matrix": confusion_matrix(labels, pred, labels=list(range(k))).tolist(),
        "ece": expected_calibration_error(probs, labels),
        "nll": nll(probs, labels),
    }
    absent = [classes[c] for c in range(k) if c not in present]
    if absent:
        report["classes_absent"] = absent
        report["note"] = (f"classes absent from the data ({', '.join(absent)}) are left out of balanced accuracy "
                          "and macro-F1")
    return report


def subject_report(probs: np.ndarray, labels: np.ndarray, subjects: list[str | None],
                   classes: tuple[str, ...] | list[str]) -> dict | None:
    """Aggregate slices per subject (mean probability) and report accuracy and balanced accuracy."""
    if any(s is None for s in subjects):
        return None
    names = sorted(set(subjects))
    subj = np.array(subjects)
    p = np.stack([probs[subj == s].mean(0) for s in names])
    y = np.array([np.bincount(labels[subj == s]).argmax() for s in names])
    rep = classification_report(p, y, classes)
    return {"n_subjects": len(names), "subject_accuracy": rep["accuracy"],
            "subject_balanced_accuracy": rep["balanced_accuracy"], "subject_macro_f1": rep["macro_f1"],
            "subject_confusion_matrix": rep["confusion_matrix"]}
