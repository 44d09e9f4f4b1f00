"""Does a dementia student head that reads coarser cells of the gated feature map change fewer answers?

    .venv/bin/python -m dev.dementia_pooled_head

The shipped ConvNet1's head reads its 54 x 12 x 12 gated feature map flattened, one weight per cell, so a
rotation or a smaller head moves evidence between cells with different weights. Here the same frozen features
are averaged over coarser grids (6 x 6, 4 x 4, 3 x 3, 2 x 2, 1 x 1 cells) and a linear head is fitted as shipped
(every slice and three perturbed copies, every subject but the robustness sample's), at a few L2 strengths;
each is scored on the sample as ``dev.dementia_head_copies`` scores heads. An experiment, not served.

Measured 2026-12-06 (clean slice-balanced accuracy held out / answers changed: mean, worst, families above 10%):

    grid 12 (shipped)  L2 x1    53.3% / 8.8%, 21.3% rotate 5 deg, 9     (x0.3: 52.7% / 9.1%, 20.0%, 9)
    grid 6             L2 x0.3  53.0% / 10.7%, 23.3% gamma 1.25, 14
    grid 4             L2 x1    50.7% / 9.1%, 20.0% gamma 1.25, 10
    grid 3             L2 x3    54.0% / 10.0%, 28.7% gamma 1.25, 9
    grid 2             L2 x1    57.0% / 11.7%, 30.3% gamma 0.8, 13
    grid 1 (global)    L2 x3    51.0% / 7.7%, 43.7% gamma 1.25, 4

Coarser cells trade the geometric changes (rotation, padding, matrix 160) for intensity ones: the features'
means follow the gamma of the slice. No grid and strength keeps every change under 10%.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def pooled(feats: np.ndarray, grid: int, channels: int = 54, side: int = 12) -> np.ndarray:
    """N x (channels * side^2) C-major flattened maps -> N x (channels * grid^2) means over grid x grid cells
    (cell edges by ``np.array_split``)."""
    maps = feats.reshape(len(feats), channels, side, side)
    parts = []
    for rows in np.array_split(np.arange(side), grid):
        for cols in np.array_split(np.arange(side), grid):
            parts.append(maps[:, :, rows][:, :, :, cols].mean(axis=(2, 3)))
    return np.stack(parts, axis=2).reshape(len(feats), -1)


def main() -> None:
    from dev.dementia_head_copies import cached_arrays, change_report, held_out, sample_images
    from diseaseid.paths import weights_dir
    from diseaseid.train.embeddings import model_features
    from diseaseid.train.subject_heads import LinearHead

    start = time.time()
    h = held_out(weights_dir() / "dementia" / "student.safetensors")
    feats = cached_arrays(Path("runs/dem-exp") / f"sample-student-{h.card['version']}.npz", lambda: {
        name: model_features(h.model, stack) for name, stack in sample_images(h.sample).items()})
    print(f"features ready in {time.time() - start:.0f} s", flush=True)
    y = h.ds.labels[h.train]
    three = [h.x_all[h.train]] + [c[h.train] for c in h.copies]
    l2 = float(h.card["training"]["l2"])
    for grid in (12, 6, 4, 3, 2, 1):
        xs = [pooled(x, grid) for x in three] if grid < 12 else three
        fs = {k: pooled(v, grid) if grid < 12 else v for k, v in feats.items()}
        # the same total penalty per unit of evidence: a cell mean of k^2 cells carries k^2 times the weight
        for factor in (0.1, 0.3, 1.0, 3.0):
            head = LinearHead(l2=l2 * factor).fit(np.concatenate(xs), np.tile(y, len(xs)))
            change_report(f"grid {grid} x {grid}, L2 x{factor:g}", fs, head.weight, head.bias, h.sample.labels)


if __name__ == "__main__":
    main()
