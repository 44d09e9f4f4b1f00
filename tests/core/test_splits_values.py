"""Splits by value (so that a mutated rule fails a test): which groups the grouped stratified split sends to validation
(each class's groups taken until their images reach the fraction, and not one group more), the split file's fields, and
when a split on file is reused. Constructed labels and groups; the split file test uses the fixture images."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diseaseid.data import splits
from diseaseid.data.dataset import ImageFolder
from diseaseid.data.phash import group_ids, near_duplicate_pairs, phashes
from diseaseid.data.splits import (
    PHASH_MAX_DISTANCE,
    grouped_stratified_split,
    leakage_groups,
    load_or_make_split,
    make_split,
    read_split,
    write_split,
)
from diseaseid.tasks import get_task


def constructed(sizes_by_class: dict[int, list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """labels, groups: one group per listed size, all of its images of that class."""
    labels, groups, g = [], [], 100
    for c, sizes in sizes_by_class.items():
        for size in sizes:
            labels += [c] * size
            groups += [g] * size
            g += 7  # group ids need not be 0..n-1
    return np.array(labels, np.int64), np.array(groups, np.int64)


def check_greedy(labels, groups, val, fraction, min_groups=3):
    """Per class: validation holds whole groups whose images reach ``fraction`` of the class, and dropping any
    one validation group of the class falls below it (the greedy stops as soon as the target is reached)."""
    for c in np.unique(labels):
        class_groups = np.unique(groups[labels == c])
        val_groups = np.unique(groups[val][labels[val] == c])
        total = (labels == c).sum()
        if len(class_groups) < min_groups:
            assert len(val_groups) == 0, c
            continue
        taken = sum((groups == g).sum() for g in val_groups)
        target = fraction * total
        assert taken >= target, (c, taken, target)
        assert any(taken - (groups == g).sum() < target for g in val_groups), (c, taken, target)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_each_class_gives_whole_groups_until_the_fraction_is_reached(seed):
    labels, groups = constructed({0: [2] * 5, 1: [1, 3, 2, 4, 1, 1], 2: [5, 5], 3: [1, 1, 1]})
    train, val = grouped_stratified_split(labels, groups, 0.2, seed=seed)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(labels)))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)  # sorted indices
    assert not set(groups[train]) & set(groups[val])
    check_greedy(labels, groups, val, 0.2)
    # class 0: 10 images, target 2.0: exactly one group of 2 (taken == target stops the greedy)
    assert (labels[val] == 0).sum() == 2
    # class 2 has two groups only: it stays in train; class 3's three groups are enough for validation
    assert (labels[val] == 2).sum() == 0 and (labels[val] == 3).sum() == 1


def test_fraction_min_groups_and_seed():
    labels, groups = constructed({0: [1] * 20, 1: [1] * 3})
    train, val = grouped_stratified_split(labels, groups, 0.5, seed=5)
    assert (labels[val] == 0).sum() == 10 and (labels[val] == 1).sum() == 2  # 1.5 -> 2 groups
    _, val4 = grouped_stratified_split(labels, groups, 0.5, seed=5, min_groups_for_val=4)
    assert (labels[val4] == 1).sum() == 0 and (labels[val4] == 0).sum() == 10
    again = grouped_stratified_split(labels, groups, 0.5, seed=5)
    assert np.array_equal(again[1], val)
    others = {tuple(grouped_stratified_split(labels, groups, 0.5, seed=s)[1]) for s in range(6)}
    assert len(others) > 1  # the seed chooses which groups
    _, default = grouped_stratified_split(labels, groups)
    assert (labels[default] == 0).sum() == 4 and (labels[default] == 1).sum() == 1  # 20% by default, seed 0
    assert np.array_equal(default, grouped_stratified_split(labels, groups, 0.2, seed=0)[1])
    assert not np.array_equal(default, grouped_stratified_split(labels, groups, 0.2, seed=1)[1])


def test_a_group_is_stratified_under_its_majority_label():
    # three mixed groups, two of majority 1 and one of majority 0; plus pure groups of class 0
    labels = np.array([1, 1, 0, 1, 1, 0, 0, 0, 1] + [0] * 6)
    groups = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3] + [4, 5, 6, 7, 8, 9])
    # class 1 by majority has only groups 1 and 2 (< 3): neither may go to validation
    for seed in range(8):
        _, val = grouped_stratified_split(labels, groups, 0.3, seed=seed)
        assert not set(groups[val]) & {1, 2}
        assert set(groups[val]) <= {3, 4, 5, 6, 7, 8, 9} and len(val) > 0


def test_leakage_groups_join_subjects_and_near_copies_and_report_them(capsys):
    rng = np.random.default_rng(0)
    base = [np.repeat(np.kron(rng.random((8, 8)) * 255, np.ones((28, 28))).astype(np.uint8)[..., None], 3, 2)
            for _ in range(4)]
    images = np.stack([base[0], base[0], base[1], base[2], base[3]])  # 0 and 1: identical
    files = [f"x/{i}.png" for i in range(5)]
    subjects = [None, None, "s1", None, "s1"]  # 2 and 4: one subject
    ds = ImageFolder(Path("."), get_task("tumor"), files, np.array([0, 1, 0, 2, 0]), subjects,
                     np.full(5, -1, np.int64), _images=images)
    groups = leakage_groups(ds)
    want = group_ids(5, near_duplicate_pairs(phashes(images), PHASH_MAX_DISTANCE), base=subjects)
    assert np.array_equal(groups, want)
    assert groups[0] == groups[1] and groups[2] == groups[4] and len(set(groups)) == 3
    assert capsys.readouterr().out == ("[tumor] 5 images -> 3 groups; 1 near-duplicate pairs (pHash <= 4); "
                                       "2 groups of 2+ hold 4 images; 1 groups mix labels\n")
    leakage_groups(ds, verbose=False)
    assert capsys.readouterr().out == ""
    # dementia groups by subject only
    ds.task = get_task("dementia")
    assert list(leakage_groups(ds, verbose=False)) == list(group_ids(5, np.zeros((0, 2), np.int64), subjects))


@pytest.fixture(scope="module")
def fixture_set(fixtures_dir) -> ImageFolder:
    return ImageFolder.scan(fixtures_dir / "dementia", get_task("dementia"))


def test_split_file_fields(fixture_set, tmp_path):
    ds = fixture_set
    split = make_split(ds, val_fraction=0.3, seed=2)
    groups = leakage_groups(ds, verbose=False)
    train, val = grouped_stratified_split(ds.labels, groups, 0.3, 2)
    assert split == {
        "task": "dementia", "seed": 2, "val_fraction": 0.3, "phash_max_distance": None,
        "data_fingerprint": ds.fingerprint(), "groups": len(set(groups)),
        "train": [ds.files[i] for i in train], "val": [ds.files[i] for i in val],
        "group_of": {f: int(g) for f, g in zip(ds.files, groups)},
    }
    assert split["val"] and split["train"]
    default = make_split(ds)
    assert default["seed"] == 0 and default["val_fraction"] == 0.2
    tumor = ImageFolder.scan(ds.root.parent / "tumor", get_task("tumor"), per_class=2)
    assert make_split(tumor)["phash_max_distance"] == PHASH_MAX_DISTANCE == 4

    path = write_split(split, tmp_path / "new" / "dir" / "split.json")
    assert path == tmp_path / "new" / "dir" / "split.json"
    text = path.read_text()
    assert text.endswith("}\n") and text == json.dumps(split, indent=1) + "\n"
    assert read_split(path) == split and read_split(str(path)) == split


def test_a_split_on_file_is_reused_only_for_the_same_data(fixture_set, tmp_path, capsys):
    ds = fixture_set
    path = tmp_path / "split.json"
    made = load_or_make_split(ds, path, val_fraction=0.3, seed=1)  # no file: made and written
    assert read_split(path) == made and made["seed"] == 1 and made["val_fraction"] == 0.3
    kept = dict(made, note="on file")
    write_split(kept, path)
    assert load_or_make_split(ds, str(path)) == kept  # same data: the file wins, whatever the arguments
    capsys.readouterr()
    write_split(dict(kept, data_fingerprint="other"), path)
    remade = load_or_make_split(ds, path, val_fraction=0.3, seed=1)
    assert f"split {path} was made from other data; making a new one" in capsys.readouterr().out
    assert remade == made and read_split(path) == made
    assert load_or_make_split(ds, tmp_path / "fresh.json") == make_split(ds)  # defaults 0.2 and seed 0


def test_module_constants():
    assert splits.PHASH_MAX_DISTANCE == 4
