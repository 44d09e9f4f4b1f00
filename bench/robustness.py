"""Robustness of every shipped model to acquisition changes (``diseaseid robustness``, docs/robustness.md):
accuracy, answers changed and OOD flags per change, non-MRI flag rate, relevance inside the head. Numbers, not
timings: the same run on any machine gives the same figures up to float rounding."""
from __future__ import annotations

import numpy as np


def run(quick: bool = False) -> dict:
    from diseaseid.robustness.evaluate import decode, evaluate_task, load_sample
    from diseaseid.robustness.perturbations import PERTURBATIONS, by_name
    from diseaseid.robustness.relevance import relevance_inside_head
    from diseaseid.robustness.report import markdown
    from diseaseid.serving.predictor import Predictor

    n, rel_n = (40, 8) if quick else (120, 24)
    chosen = by_name(["noise", "corners", "pad", "dicom16"]) if quick else PERTURBATIONS
    results = {}
    for task in ("tumor", "dementia"):
        try:
            result = evaluate_task(task, n=n, perturbations=chosen)
        except FileNotFoundError as exc:  # no data set on this machine
            print(f"{task}: skipped ({exc})")
            results[task] = {"skipped": str(exc)}
            continue
        sample = load_sample(task, rel_n, seed=1)
        images = np.stack([decode(np.clip(np.round(r), 0, 255).astype(np.uint8)) for r in sample.raws])
        result["relevance_inside_head"] = {
            role: relevance_inside_head(Predictor.from_shipped(task, role), images) for role in ("teacher", "student")}
        results[task] = result
    print(markdown({k: v for k, v in results.items() if "skipped" not in v}))
    return {task: ({"summary": r["summary"], "non_mri": r.get("non_mri", {}).get("flagged"),
                    "relevance_inside_head": r.get("relevance_inside_head"), "n": r["n"]}
                   if "skipped" not in r else r) for task, r in results.items()}
