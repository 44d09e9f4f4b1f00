"""Leakage-safe splits: grouped (subjects and near-duplicate groups never cross), stratified, seeded, on file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from diseaseid.data.dataset import ImageFolder
from diseaseid.data.phash import group_ids, near_duplicate_pairs, phashes

PHASH_MAX_DISTANCE = 4


def leakage_groups(ds: ImageFolder, max_distance: int = PHASH_MAX_DISTANCE,
                   verbose: bool = True) -> np.ndarray:
    """Group id per image: one group per subject, joined with perceptual-hash neighbours when the task asks."""
    pairs = np.zeros((0, 2), np.int64)
    if ds.task.group_by_phash:
        pairs = near_duplicate_pairs(phashes(ds.stored_images()), max_distance)
    groups = group_ids(len(ds), pairs, base=ds.subjects)
    if verbose:
        sizes = np.bincount(np.unique(groups, return_inverse=True)[1])
        merged = sizes[sizes > 1]
        mixed = sum(len(set(ds.labels[groups == g])) > 1 for g in np.unique(groups)[sizes > 1])
        print(f"[{ds.task.name}] {len(ds)} images -> {len(sizes)} groups; {len(pairs)} near-duplicate pairs "
              f"(pHash <= {max_distance}); {len(merged)} groups of 2+ hold {int(merged.sum())} images; "
              f"{mixed} groups mix labels")
    return groups


def grouped_stratified_split(labels: np.ndarray, groups: np.ndarray, val_fraction: float = 0.2,
                             seed: int = 0, min_groups_for_val: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val). Each group goes whole to one side; groups are stratified by majority label.

    A class with fewer than ``min_groups_for_val`` groups stays entirely in train so it can be learned."""
    rng = np.random.default_rng(seed)
    uniq, inverse = np.unique(groups, return_inverse=True)
    group_label = np.array([np.bincount(labels[inverse == g]).argmax() for g in range(len(uniq))])
    group_size = np.bincount(inverse)
    val_groups = []
    for c in np.unique(group_label):
        members = np.nonzero(group_label == c)[0]
        if len(members) < min_groups_for_val:
            continue
        rng.shuffle(members)
        target, taken = val_fraction * group_size[members].sum(), 0
        for g in members:
            if taken >= target:
                break
            val_groups.append(g)
            taken += group_size[g]
    is_val = np.isin(inverse, val_groups)
    return np.nonzero(~is_val)[0], np.nonzero(is_val)[0]


def make_split(ds: ImageFolder, val_fraction: float = 0.2, seed: int = 0) -> dict:
    groups = leakage_groups(ds)
    train, val = grouped_stratified_split(ds.labels, groups, val_fraction, seed)
    return {
        "task": ds.task.name,
        "seed": seed,
        "val_fraction": val_fraction,
        "phash_max_distance": PHASH_MAX_DISTANCE if ds.task.group_by_phash else None,
        "data_fingerprint": ds.fingerprint(),
        "groups": int(len(np.unique(groups))),
        "train": [ds.files[i] for i in train],
        "val": [ds.files[i] for i in val],
        "group_of": {ds.files[i]: int(groups[i]) for i in range(len(ds))},
    }


def write_split(split: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(split, indent=1) + "\n")
    return path


def read_split(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def load_or_make_split(ds: ImageFolder, path: str | Path, val_fraction: float = 0.2, seed: int = 0) -> dict:
    """Reuse the split on file when it was made from this very data; otherwise make and write it."""
    path = Path(path)
    if path.exists():
        split = read_split(path)
        if split.get("data_fingerprint") == ds.fingerprint():
            return split
        print(f"split {path} was made from other data; making a new one")
    split = make_split(ds, val_fraction, seed)
    write_split(split, path)
    return split
