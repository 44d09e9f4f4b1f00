"""A weights file that is not shipped, measured the way ``diseaseid robustness`` measures the shipped ones.

    .venv/bin/python -m dev.weights_robustness runs/x/teacher.safetensors      # dementia: about 4 minutes on 2 cores

For a candidate model (a ``.safetensors`` with its card) of a task, on the benchmark's samples of that task's
validation slices: the share of positive LRP and Grad-CAM relevance inside the head (the relevance sample, as
``diseaseid robustness`` draws it: 300 slices, seed 1), then the network's label on the clean slices and under
every perturbation (the robustness sample: 300 slices, seed 0, each perturbation at its level and seed as in the
benchmark): slice-balanced accuracy and the share of answers changed. No OOD check, no held-out refit: the
network as it is (trained on the task's training split, it has not seen these validation slices).

2026-12-06, the dementia teacher fine-tuned end to end from ImageNet on the head-cropped training split (127
subjects; ``python -m diseaseid train --task dementia --model lite0 --epochs 3 --batch-size 32 --lr 3e-4
--weight-decay 0.05 --label-smoothing 0.1 --warmup-epochs 0.3 --patience 3 --balanced --select
subject_balanced_accuracy --threads 2 --out runs/exp-dementia-teacher-ft``, 8 min; validation subject-balanced
accuracy by epoch 49.9 / 47.9 / 45.8%, epoch 1 kept), against the shipped teacher (frozen ImageNet Lite0 and a
linear head; docs/robustness.md, held out):

    relevance inside the head: LRP 77.8% (min 39.7%), Grad-CAM 76.1% (min 45.9%)   (shipped 77.0%, 76.1%)
    clean slice-balanced 51.3%; realistic changes: mean 23.4% of answers changed, worst 52.3% (pad 32 px),
    18 of 24 above 10%                                        (shipped, held out: 12-42% under most changes)

Fine-tuning moved neither share: the relevance that leaves the dementia head lies next to its edge, where the
brain's outline is (docs/explainers.md), whatever the backbone learnt; and the fine-tuned network is more fragile.
"""
from __future__ import annotations

import argparse

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="a .safetensors with its card (.json beside it)")
    parser.add_argument("--n", type=int, default=300, help="slices per sample")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    from dev.tumor_noise_val import labels
    from diseaseid.robustness.evaluate import _u8, decode, held_out_scores, load_sample
    from diseaseid.robustness.perturbations import PERTURBATIONS
    from diseaseid.robustness.relevance import relevance_inside_head
    from diseaseid.serving.predictor import Predictor

    torch.set_num_threads(args.threads)
    predictor = Predictor.from_weights(args.weights, runtime="torch")
    task = predictor.task.name
    sample = load_sample(task, args.n, 1)  # the relevance sample of `diseaseid robustness` (its seed + 1)
    images = np.stack([decode(_u8(r)) for r in sample.raws])
    rel = relevance_inside_head(predictor, images)
    print(f"{task} {predictor.version}: relevance inside the head: "
          + ", ".join(f"{m} {v['mean']:.1%} (min {v['min']:.1%})" for m, v in rel.items()), flush=True)

    sample = load_sample(task, args.n, 0)  # the robustness sample (seed 0)
    with torch.inference_mode():
        clean = labels(predictor, np.stack([decode(_u8(r)) for r in sample.raws]), batch=64)
        print(f"clean: slice-balanced accuracy "
              f"{held_out_scores(sample.labels, clean, None)['balanced_accuracy']:.1%}", flush=True)
        changed = []
        for k, pert in enumerate(PERTURBATIONS):
            rng = np.random.default_rng(k)  # the benchmark's draw for seed 0 (seed * 1000 + k)
            got = held_out_scores(sample.labels, labels(
                predictor, np.stack([decode(pert.apply(r, rng)) for r in sample.raws]), batch=64), clean)
            if pert.realistic:
                changed.append(got["changed"])
            print(f"{pert.name:24s} balanced {got['balanced_accuracy']:.1%}  changed {got['changed']:.1%}"
                  + ("" if pert.realistic else "  (beyond the realistic levels)"), flush=True)
    print(f"realistic changes: mean {np.mean(changed):.1%} of answers changed, worst {max(changed):.1%}, "
          f"{sum(c > 0.10 for c in changed)} of {len(changed)} above 10%")


if __name__ == "__main__":
    main()
