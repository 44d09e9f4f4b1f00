"""Does averaging over small rotations and gamma at test time steady the dementia student's slice answers?

    .venv/bin/python -m dev.dementia_tta        # about 8 minutes on 2 cores

On the robustness sample (``diseaseid robustness``: 300 validation slices, seed 0; each realistic perturbation at
its level and seed as in the benchmark) the student's slice head is fitted as shipped (every slice and three
perturbed copies, ``ship-dementia --augmented 3``) without the sample's subjects, and each slice's features are
averaged over copies of the head-cropped slice rotated by -3 / +3 degrees and under gamma 0.85 / 1.15 before the
linear head. Printed: clean slice-balanced accuracy and the share of answers each perturbation changes, as
``dev.dementia_head_copies`` prints them (its "three copies" row is this script's "none" row).

2026-12-05: none 53.3% clean, mean changed 8.8%, worst 21.3%, 9 changes above 10%; all five copies 53.3%, 7.9%,
19.3%, 7; rotations alone worst 21.0%, gamma alone 21.7%: far from issue 24's 10%, at five times the compute, so
not served (docs/robustness.md).
"""
from __future__ import annotations

import time

import numpy as np
from PIL import Image


def _rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    """Each channel rotated about the centre (bilinear), the corners filled with the zero background."""
    return np.stack([np.asarray(Image.fromarray(image[..., c]).rotate(degrees, Image.BILINEAR))
                     for c in range(image.shape[-1])], -1)


def _gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """Bytes through ``255 (x / 255) ** gamma`` (zero stays zero)."""
    return np.round(255.0 * (np.arange(256) / 255.0) ** gamma).astype(np.uint8)[image]


VARIANTS = {"none": lambda a: a, "rotate -3": lambda a: _rotated(a, -3), "rotate +3": lambda a: _rotated(a, 3),
            "gamma 0.85": lambda a: _gamma(a, 0.85), "gamma 1.15": lambda a: _gamma(a, 1.15)}


def main() -> None:
    from dev.dementia_head_copies import change_report, held_out, sample_images
    from diseaseid.paths import weights_dir
    from diseaseid.train.embeddings import model_features
    from diseaseid.train.subject_heads import LinearHead

    start = time.time()
    h = held_out(weights_dir() / "dementia" / "student.safetensors")
    sample = h.sample
    head = LinearHead(l2=float(h.card["training"]["l2"])).fit(
        np.concatenate([h.x_all[h.train]] + [c[h.train] for c in h.copies]),
        np.tile(h.ds.labels[h.train], 1 + len(h.copies)))
    feats = {name: {v: model_features(h.model, np.stack([f(a) for a in stack])) for v, f in VARIANTS.items()}
             for name, stack in sample_images(sample).items()}
    print(f"features ready in {time.time() - start:.0f} s", flush=True)

    def report(label: str, use: list[str]) -> None:
        mean = {name: np.mean([by[v] for v in use], 0) for name, by in feats.items()}
        change_report(label, mean, head.weight, head.bias, sample.labels)

    report("none", ["none"])
    report("rotations", ["none", "rotate -3", "rotate +3"])
    report("gamma", ["none", "gamma 0.85", "gamma 1.15"])
    report("all five", list(VARIANTS))
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
