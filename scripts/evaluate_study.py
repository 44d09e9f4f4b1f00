"""Subject-level balanced accuracy of the shipped study path (teacher embeddings + MIL head, exactly as
``POST /predict/study`` runs it) on the validation subjects of our split. Needs the full dementia data.

    .venv/bin/python scripts/evaluate_study.py [--task dementia]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from diseaseid.serving import Predictor, StudyModel  # noqa: E402
from diseaseid.train.data import load_task_data  # noqa: E402
from diseaseid.train.metrics import classification_report  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="dementia")
    args = ap.parse_args()
    study = StudyModel.from_shipped(args.task, Predictor.from_shipped(args.task, "teacher"))
    if study is None:
        print(f"task {args.task} ships no subject-level model")
        return 2
    _, val, _ = load_task_data(args.task)
    probs, labels = [], []
    for subject in sorted(set(val.subjects)):
        idx = np.flatnonzero(np.asarray(val.subjects) == subject)
        idx = idx[np.argsort(val.slice_ranks[idx], kind="stable")]  # stack order, lowest first
        probs.append(study.predict(val.images[idx]).probabilities)
        labels.append(int(val.labels[idx[0]]))
    report = classification_report(np.stack(probs), np.array(labels), val.task.classes)
    print(f"{study.name} {study.version}: {len(labels)} validation subjects, subject-level balanced accuracy "
          f"{report['balanced_accuracy']:.4f}, accuracy {report['accuracy']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
