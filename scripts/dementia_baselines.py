"""A non-deep baseline for the dementia task, to put the CNN and MIL figures in context.

Per subject: in 4 or 8 slabs of consecutive slices, the share of brain pixels darker than a few thresholds
(cerebrospinal fluid: atrophy widens sulci and ventricles), over the whole slice and its central third
(ventricles), plus the brain's area. A class-weighted logistic regression reads them. Reported two ways:
on our fixed split (127 train / 33 validation subjects, as the shipped models) and by 5-fold cross-
validation over all 160 subjects, repeated 5 times (subject-level balanced accuracy over the 3 classes with
more than 2 subjects). Needs the full data set; about a minute on 2 cores.

    .venv/bin/python scripts/dementia_baselines.py
"""
from __future__ import annotations

import csv
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from diseaseid.paths import REPO_ROOT, task_data_dir  # noqa: E402
from diseaseid.tasks import get_task  # noqa: E402

THRESHOLDS = (30, 40, 50, 60, 70, 80)  # uint8 intensities; brain tissue is mostly above 90
BACKGROUND = 5


def load_stacks(root: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Subjects (sorted), their slice stacks (S x 32 x H x W uint8, lowest slice first) and class indices."""
    classes = get_task("dementia").classes
    rows = list(csv.DictReader(open(root / "subjects.csv", newline="")))
    subjects = sorted({r["subject"] for r in rows})
    index = {s: i for i, s in enumerate(subjects)}
    depth = max(int(r["slice_rank"]) for r in rows) + 1
    first = np.asarray(Image.open(root / rows[0]["file"]).convert("L"))
    stacks = np.zeros((len(subjects), depth, *first.shape), np.uint8)
    labels = np.zeros(len(subjects), np.int64)
    for r in rows:
        stacks[index[r["subject"]], int(r["slice_rank"])] = np.asarray(Image.open(root / r["file"]).convert("L"))
        labels[index[r["subject"]]] = classes.index(r["class"])
    return subjects, stacks, labels


def csf_features(stacks: np.ndarray, slabs: int) -> np.ndarray:
    out = []
    for stack in stacks:
        feats = []
        for slab in np.array_split(stack, slabs):
            brain = slab[slab > BACKGROUND]
            feats += [(brain < t).mean() for t in THRESHOLDS]
            feats.append((slab > BACKGROUND).mean())
            _, h, w = slab.shape
            centre = slab[:, h // 3: 2 * h // 3, w // 3: 2 * w // 3]
            centre = centre[centre > BACKGROUND]
            feats += [(centre < t).mean() if centre.size else 0.0 for t in THRESHOLDS]
        out.append(feats)
    return np.asarray(out)


def main() -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    warnings.filterwarnings("ignore")
    root = task_data_dir(get_task("dementia"))
    if not (root / "subjects.csv").exists():
        print(f"needs the dementia data set with its subjects.csv at {root}")
        return 2
    subjects, stacks, y = load_stacks(root)
    split = json.loads((REPO_ROOT / "splits" / "dementia.json").read_text())
    val_subjects = {Path(f).stem.rsplit("_r", 1)[0] for f in split["val"]}
    is_val = np.array([s in val_subjects for s in subjects])
    print(f"{len(subjects)} subjects ({is_val.sum()} in our validation split), stacks of {stacks.shape[1]} slices")
    print(f"{'features':9s} {'C':>5s}  {'fixed split':>11s}  {'5x5-fold CV':>15s}")
    for slabs in (4, 8):
        x = csf_features(stacks, slabs)
        for c in (0.01, 0.03, 0.1, 0.3):
            def model(c=c):
                return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced",
                                                                          max_iter=3000))
            fixed = balanced_accuracy_score(y[is_val], model().fit(x[~is_val], y[~is_val]).predict(x[is_val]))
            scores = []
            for seed in range(5):
                pred = np.zeros_like(y)
                folds = StratifiedKFold(5, shuffle=True, random_state=seed).split(x, np.minimum(y, 2))
                for tr, te in folds:
                    pred[te] = model().fit(x[tr], y[tr]).predict(x[te])
                scored = y < 3  # ModerateDemented: 2 subjects, no estimate possible
                scores.append(balanced_accuracy_score(y[scored], pred[scored]))
            print(f"csf x{slabs:<4d} {c:5.2f}  {fixed:11.3f}  {np.mean(scores):7.3f} +- {np.std(scores):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
