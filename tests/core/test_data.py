"""Data sets, subjects, near-duplicate groups and leakage-safe splits."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diseaseid.data.augment import augment
from diseaseid.data.dataset import ImageFolder
from diseaseid.data.phash import group_ids, near_duplicate_pairs, phash, phashes
from diseaseid.data.splits import grouped_stratified_split, leakage_groups, make_split
from diseaseid.data.subjects import subject_from_name
from diseaseid.paths import split_path, task_data_dir
from diseaseid.tasks import TASKS, get_task

FULL = {name: task_data_dir(t) for name, t in TASKS.items()}


def needs_full_data(task: str):
    return pytest.mark.skipif(not FULL[task].is_dir(),
                              reason=f"full data set not present at {FULL[task]} (../shared/data)")


def test_subject_ids_from_file_names():
    assert subject_from_name("OAS1_0001_MR1_mpr_n4_anon_111_t88_masked_gfc_slice_100.jpg") == ("OAS1_0001", None)
    assert subject_from_name("NonDemented/NonDemented-019_r07.jpg") == ("NonDemented-019", 7)
    assert subject_from_name("Tr-gl_0010.jpg") == (None, None)


@pytest.mark.parametrize("task", ["tumor", "dementia"])
def test_fixture_sets_load(fixtures_dir, task):
    ds = ImageFolder.scan(fixtures_dir / task, get_task(task))
    assert len(ds) == len(ds.images) and ds.images.shape[1:] == (224, 224, 3)
    assert set(ds.labels.tolist()) == {0, 1, 2, 3}
    if task == "dementia":  # subjects.csv beside the images
        assert all(s is not None for s in ds.subjects) and (ds.slice_ranks >= 0).all()


@pytest.mark.parametrize("task", ["tumor", "dementia"])
def test_full_sets_load_a_subset(task):
    if not FULL[task].is_dir():
        pytest.skip(f"full data set not present at {FULL[task]}")
    ds = ImageFolder.scan(FULL[task], get_task(task), per_class=5)
    assert len(ds) == 20 and ds.images.shape == (20, 224, 224, 3)


def test_phash_groups_near_copies():
    rng = np.random.default_rng(0)
    base = (rng.random((56, 56)) * 255).astype(np.uint8).repeat(4, 0).repeat(4, 1)
    img = np.stack([base] * 3, -1)
    noisy = np.clip(img.astype(int) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
    other = np.stack([np.rot90(base)] * 3, -1)
    hashes = phashes(np.stack([img, noisy, other]))
    assert hashes.dtype == np.uint64 and phash(img) == hashes[0]
    pairs = near_duplicate_pairs(hashes, 4)
    assert pairs.tolist() == [[0, 1]]
    assert group_ids(3, pairs).tolist() == [0, 0, 2]


def test_group_ids_join_subjects_and_pairs():
    groups = group_ids(5, np.array([[1, 2]]), base=["a", "b", None, "a", None])
    assert groups[0] == groups[3] and groups[1] == groups[2] and len(set(groups)) == 3


def test_grouped_split_keeps_groups_whole_and_is_deterministic():
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 120, 1000)
    labels = groups % 4
    labels[groups == 7] = 3  # a class with too few groups stays in train
    tr, va = grouped_stratified_split(labels, groups, 0.2, seed=3)
    assert set(groups[tr]).isdisjoint(groups[va])
    assert len(tr) + len(va) == 1000 and 0.1 < len(va) / 1000 < 0.3
    again = grouped_stratified_split(labels, groups, 0.2, seed=3)
    assert np.array_equal(tr, again[0]) and np.array_equal(va, again[1])
    few = np.zeros(10, int)
    few_groups = np.array([0] * 5 + [1] * 5)
    tr2, va2 = grouped_stratified_split(np.r_[few, np.ones(100, int)], np.r_[few_groups, np.arange(2, 102)], 0.2)
    assert not (np.r_[few, np.ones(100, int)][va2] == 0).any()


def test_fixture_split_has_no_subject_in_both_sides(fixtures_dir):
    ds = ImageFolder.scan(fixtures_dir / "dementia", get_task("dementia"))
    split = make_split(ds, val_fraction=0.34, seed=0)
    train_subjects = {ds.subjects[ds.files.index(f)] for f in split["train"]}
    val_subjects = {ds.subjects[ds.files.index(f)] for f in split["val"]}
    assert val_subjects and train_subjects.isdisjoint(val_subjects)


@pytest.mark.parametrize("task", ["tumor", "dementia"])
def test_shipped_split_files_are_leakage_free(task):
    """The committed split: no subject and no pHash near-duplicate group in both train and validation."""
    if not FULL[task].is_dir():
        pytest.skip(f"full data set not present at {FULL[task]}")
    from diseaseid.data.splits import read_split

    split = read_split(split_path(task))
    ds = ImageFolder.scan(FULL[task], get_task(task))
    assert split["data_fingerprint"] == ds.fingerprint()
    assert len(split["train"]) + len(split["val"]) == len(ds)
    train, val = set(split["train"]), set(split["val"])
    assert train.isdisjoint(val)
    g_train = {split["group_of"][f] for f in train}
    g_val = {split["group_of"][f] for f in val}
    assert g_train.isdisjoint(g_val)
    # recompute the groups independently of the file: they must agree with the stored ones
    groups = leakage_groups(ds, verbose=False)
    by_file = dict(zip(ds.files, groups))
    assert {by_file[f] for f in train}.isdisjoint({by_file[f] for f in val})
    # the same partition of the files (ids may be numbered differently): each stored group is exactly one
    # recomputed group and the other way round
    stored = [split["group_of"][f] for f in ds.files]
    links = set(zip(stored, groups.tolist()))
    assert len(links) == len(set(stored)) == len(set(groups.tolist())), "stored groups differ from recomputed"
    subjects = dict(zip(ds.files, ds.subjects))
    if task == "dementia":
        assert {subjects[f] for f in train}.isdisjoint({subjects[f] for f in val})


def test_augment_keeps_shape_range_and_side():
    x = torch.zeros(8, 3, 224, 224)
    x[:, :, 90:130, 20:60] = 1.0  # a bright "lesion" on the left
    y = augment(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    excess = (y - y.flatten(1).median(1).values.view(-1, 1, 1, 1)).clamp(min=0)  # above the background
    left, right = excess[..., :112].sum(), excess[..., 112:].sum()
    assert left > 5 * right, "no flips: the lesion stays on its side"
    assert not torch.equal(y[0], y[1])
