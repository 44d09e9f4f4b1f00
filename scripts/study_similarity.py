"""Measure how alike the slices of one subject's stack are, against slices of different subjects: the numbers
behind the thresholds of ``diseaseid.serving.study.check_study`` (docs/studies.md).

    .venv/bin/python scripts/study_similarity.py [--data ../shared/data/alzheimer-mri] [--tumor DIR]

Reads the dementia data set's ``subjects.csv`` (160 subjects x 32 consecutive axial slices), decodes every
slice as the inference service does (``to_uint8_rgb``: 224 x 224 x 3) and prints two tables:

1. the distribution of ``slice_similarity`` for pairs of slices: of one subject ``gap`` positions apart, of two
   subjects at the same, a nearby or any height, and a dementia slice beside a tumour slice;
2. how often each warning of ``check_study`` fires on simulated studies: one subject's slices (evenly spaced,
   or any sorted subset), and two subjects mixed (the first half of one, the rest of another, continuing up
   the stack; or alternating), each drawn 500 times per row.
"""
from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from diseaseid.data.preprocess import to_uint8_rgb
from diseaseid.serving.study_checks import (
    MAX_DISSIMILARITY_RATIO,
    MIN_NEIGHBOUR_SIMILARITY,
    SKIP_MARGIN,
    SliceSource,
    check_study,
    grey_features,
)

ROOT = Path(__file__).resolve().parent.parent
CODES = ("unlike_neighbours", "sudden_change", "out_of_order")


def load(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return to_uint8_rgb(img)


def describe(name: str, values: np.ndarray) -> str:
    q = np.quantile(values, [0.001, 0.01, 0.05, 0.5])
    return (f"| {name} | {len(values)} | {values.min():.3f} | {q[0]:.3f} | {q[1]:.3f} | {q[2]:.3f} | "
            f"{q[3]:.3f} | {values.max():.3f} |")


class Flags:
    """Runs check_study on feature vectors standing in for images (the check only needs their similarities)."""

    def __init__(self, features: np.ndarray):
        self.features = features  # subjects x 32 x F

    def codes(self, picks: list[tuple[int, int]]) -> set[str]:
        vectors = np.stack([self.features[s, r] for s, r in picks])
        sources = [SliceSource("jpeg", 176, 208)] * len(picks)
        return {w.code for w in check_study(sources, vectors, features=vectors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "alzheimer-mri")
    parser.add_argument("--tumor", type=Path, default=ROOT / "tests" / "fixtures" / "tumor",
                        help="tumour slices to pair with dementia slices (default: the test fixtures)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    stacks: dict[str, dict[int, Path]] = defaultdict(dict)
    with open(args.data / "subjects.csv") as f:
        for row in csv.DictReader(f):
            stacks[row["subject"]][int(row["slice_rank"])] = args.data / row["file"]
    subjects = sorted(stacks)
    depth = min(len(v) for v in stacks.values())
    features = np.stack([grey_features([load(stacks[s][r]) for r in sorted(stacks[s])[:depth]])
                         for s in subjects])  # subjects x depth x F
    n = len(subjects)
    print(f"{n} subjects x {depth} slices; thresholds: MIN_NEIGHBOUR_SIMILARITY {MIN_NEIGHBOUR_SIMILARITY}, "
          f"MAX_DISSIMILARITY_RATIO {MAX_DISSIMILARITY_RATIO}, SKIP_MARGIN {SKIP_MARGIN}\n")

    print("| pair | n | min | 0.1% | 1% | 5% | median | max |")
    print("|---|---|---|---|---|---|---|---|")
    for gap in (1, 2, 4, 8, 16):
        same = np.einsum("srf,srf->sr", features[:, :-gap], features[:, gap:]).ravel()
        print(describe(f"one subject, {gap} apart", same))
    others = [rng.choice([o for o in range(n) if o != s], 5, replace=False) for s in range(n)]
    for offset in (0, 1, 8):
        ranks = np.arange(0, depth - offset, 4)
        values = [features[s, r] @ features[o, r + offset] for s in range(n) for o in others[s] for r in ranks]
        print(describe(f"two subjects, {offset} apart", np.asarray(values)))
    a, b = rng.integers(n, size=(2, 5000))
    keep = a != b
    ra, rb = rng.integers(depth, size=(2, 5000))
    values = np.einsum("nf,nf->n", features[a[keep], ra[keep]], features[b[keep], rb[keep]])
    print(describe("two subjects, any heights", values))
    tumour = sorted(args.tumor.rglob("*.jpg"))
    if tumour:
        t = grey_features([load(p) for p in tumour])
        picks = features[rng.integers(n, size=(len(t), 20)), rng.integers(depth, size=(len(t), 20))]
        print(describe("tumour slice beside dementia slice", np.einsum("tf,tkf->tk", t, picks).ravel()))

    flags = Flags(features)
    print("\n| simulated study | slices | " + " | ".join(CODES) + " | any |")
    print("|---|---|" + "---|" * (len(CODES) + 1))
    for size, gap in ((3, 1), (6, 1), (12, 1), (32, 1), (6, 2), (12, 2), (6, 4), (3, 8), (4, 8)):
        span = (size - 1) * gap
        for kind in ("one subject", "two: half and half", "two: alternating"):
            hits = {c: 0 for c in (*CODES, "any")}
            for _ in range(500):
                s, o = rng.choice(n, 2, replace=False)
                start = rng.integers(0, depth - span)
                ranks = [start + k * gap for k in range(size)]
                if kind == "one subject":
                    owner = [s] * size
                elif kind.endswith("half"):
                    owner = [s if k < size // 2 else o for k in range(size)]
                else:
                    owner = [s if k % 2 == 0 else o for k in range(size)]
                codes = flags.codes(list(zip(owner, ranks, strict=True)))
                for c in codes:
                    hits[c] += 1
                hits["any"] += bool(codes)
            print(f"| {kind}, {gap} apart | {size} | "
                  + " | ".join(f"{100 * hits[c] / 500:.1f}%" for c in (*CODES, "any")) + " |")
    hits = {c: 0 for c in (*CODES, "any")}
    for _ in range(2000):
        s, size = rng.integers(n), rng.integers(3, 13)
        codes = flags.codes([(s, r) for r in sorted(rng.choice(depth, size, replace=False))])
        for c in codes:
            hits[c] += 1
        hits["any"] += bool(codes)
    print("| one subject, any sorted subset | 3-12 | "
          + " | ".join(f"{100 * hits[c] / 2000:.1f}%" for c in (*CODES, "any")) + " |")


if __name__ == "__main__":
    main()
