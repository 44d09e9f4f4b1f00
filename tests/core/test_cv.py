"""Subject-grouped cross-validation, the prior correction, the ordinal head and the screening figures."""
import numpy as np
import pytest

from diseaseid.train.cv import (
    bootstrap_interval,
    cross_validate,
    sensitivity_at_specificity,
    subject_bags,
    subject_folds,
    subject_metrics,
)
from diseaseid.train.subject_heads import (
    LinearHead,
    OrdinalHead,
    class_prior,
    csf_features,
    prior_correct,
    slab_means,
)

CLASSES = ("NonDemented", "VeryMildDemented", "MildDemented", "ModerateDemented")


def test_folds_group_subjects_and_stratify():
    labels = np.array([0] * 80 + [1] * 56 + [2] * 22 + [3] * 2)
    seen = {r: [] for r in range(3)}
    for r, tr, te in subject_folds(labels, folds=5, repeats=3, seed=0):
        assert not set(tr) & set(te)
        assert len(tr) + len(te) == len(labels)
        seen[r].append(te)
        # Stratified: each test fold has about a fifth of every class that can be split.
        for c, n in ((0, 80), (1, 56)):
            assert abs((labels[te] == c).sum() - n / 5) <= 1
        assert abs((labels[te] >= 2).sum() - 24 / 5) <= 1  # the 2 moderate subjects ride with mild
    for tests in seen.values():
        joined = np.concatenate(tests)
        assert sorted(joined) == list(range(len(labels)))  # every subject scored exactly once per repeat
    assert not np.array_equal(seen[0][0], seen[1][0])  # repeats reshuffle


def test_subject_bags_keep_each_subjects_slices_in_stack_order():
    from pathlib import Path

    from diseaseid.data.dataset import ImageFolder
    from diseaseid.tasks import get_task

    ds = ImageFolder(Path("."), get_task("dementia"), [f"{i}.jpg" for i in range(6)], np.array([1, 0, 1, 0, 1, 0]),
                     ["b", "a", "b", "a", "b", None], np.array([2, 1, 0, 0, 1, 0]))
    feats = {"f": np.arange(6, dtype=float)[:, None]}
    bags = subject_bags(ds, feats)
    assert bags.subjects == ["a", "b"]
    assert bags.labels.tolist() == [0, 1]
    assert bags.bags[0]["f"][:, 0].tolist() == [3, 1]  # a: rank 0 (index 3), rank 1 (index 1)
    assert bags.bags[1]["f"][:, 0].tolist() == [2, 4, 0]
    assert [i.tolist() for i in bags.slice_index] == [[3, 1], [2, 4, 0]]  # a slice without a subject is left out
    # The MIL head's bags group the same way (one grouping, ImageFolder.subject_slices).
    from diseaseid.train.mil import subject_bags as mil_bags

    mil = mil_bags(ds, feats["f"])
    assert list(mil) == ["a", "b"] and mil["b"][0][:, 0].tolist() == [2, 4, 0] and mil["b"][2] == 1
    assert mil["b"][1].tolist() == [0.0, 0.5, 1.0]  # relative positions from the ranks


def test_prior_correction_undoes_class_balancing():
    rng = np.random.default_rng(0)
    # Two overlapping classes, 90% / 10%: a balanced model calls the minority far more often than it occurs.
    y = (rng.random(4000) < 0.1).astype(int)
    x = rng.normal(size=(4000, 1)) + y[:, None] * 1.0
    y4 = y.copy()
    plain = LinearHead(l2=1e-3).fit(x, y4)
    balanced = LinearHead(l2=1e-3, balanced=True).fit(x, y4)
    # After the correction the balanced head's probabilities match the plain (unweighted) model's.
    assert np.allclose(balanced.predict_proba(x), plain.predict_proba(x), atol=0.02)
    # And its mean predicted minority probability matches the prior, not 50%.
    assert abs(balanced.predict_proba(x)[:, 1].mean() - 0.1) < 0.01
    # prior_correct on explicit numbers: uniform log-probs become the prior.
    prior = class_prior(np.array([0] * 8 + [1] * 2), k=2, smoothing=0)
    assert np.allclose(prior_correct(np.log(np.full((1, 2), 0.5)), prior), [[0.8, 0.2]])


def test_linear_head_folds_standardisation_into_raw_weights():
    rng = np.random.default_rng(1)
    x = rng.normal(5, 3, size=(300, 4))
    y = np.argmax(np.stack([x[:, 0], x[:, 1], 10 - x[:, 0], 12 - x[:, 1]], 1), 1)
    head = LinearHead(l2=0.1).fit(x, y)
    assert (head.predict_proba(x).argmax(1) == y).mean() > 0.9
    assert np.allclose(head.predict_proba(x).sum(1), 1)
    assert np.allclose(head.logits(x), x @ head.weight.T + head.bias)


def test_ordinal_head_orders_stages_and_gives_rare_classes_mass():
    rng = np.random.default_rng(2)
    y = np.concatenate([np.zeros(80), np.ones(56), np.full(22, 2), np.full(2, 3)]).astype(int)
    x = y[:, None] * 1.5 + rng.normal(size=(len(y), 3)) * 0.7
    head = OrdinalHead(l2=1.0).fit(x, y)
    assert np.all(np.diff(head.thresholds) > 0)
    p = head.predict_proba(x)
    assert np.allclose(p.sum(1), 1, atol=1e-6)
    # The expected stage rises with the feature, and a far-right input is called the top stage.
    grid = np.linspace(-2, 8, 20)[:, None] * np.ones((1, 3)) / np.sqrt(3) * np.sqrt(3)
    expected = head.predict_proba(grid) @ np.arange(4)
    assert np.all(np.diff(expected) > 0)
    assert head.predict_proba(np.full((1, 3), 6.0)).argmax() == 3
    assert (p.argmax(1) == y).mean() > 0.7


def test_screening_and_confusion_figures_by_hand():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 3])
    probs = np.array([[.9, .1, 0, 0], [.8, .2, 0, 0], [.6, .3, .1, 0], [.2, .1, 0, .7],
                      [.3, .6, .1, 0], [.7, .2, .1, 0], [.1, .2, .7, 0], [0, .1, .2, .7]])
    m = subject_metrics(probs, labels, CLASSES)
    assert m["recall"] == {"NonDemented": 0.75, "VeryMildDemented": 0.5, "MildDemented": 1.0,
                           "ModerateDemented": 1.0}
    assert m["balanced_accuracy_3"] == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert m["moderate_said_for_normal"] == 0.25
    assert m["wrong_class_share"]["VeryMildDemented"]["NonDemented"] == 0.5
    assert m["max_wrong_class_share"] == 0.5
    # Screening score 1 - P(normal): normals .1 .2 .4 .8, impaired .7 .3 .9 1.0 -> AUC 13/16 pairs won.
    assert m["screening_auc"] == pytest.approx(13 / 16)
    # 90% specificity with 4 normals: threshold at the highest normal score (.8): 2 of 4 impaired above it.
    assert sensitivity_at_specificity(labels != 0, 1 - probs[:, 0], 0.9) == 0.5


def test_cross_validation_of_a_head_on_separable_bags():
    rng = np.random.default_rng(3)
    labels = np.array([0] * 30 + [1] * 20 + [2] * 10 + [3] * 2)
    bags = type("B", (), {})()
    bags.labels = labels
    bags.bags = [{"final": rng.normal(size=(8, 5)) + y * 2.0} for y in labels]
    bags.subjects = [str(i) for i in range(len(labels))]

    def head(train, y, test):
        from diseaseid.train.subject_heads import bag_linear

        return bag_linear(train, y, test, l2=1.0, balanced=False)

    r = cross_validate(bags, head, CLASSES, folds=5, repeats=2)
    assert r["balanced_accuracy_3"]["mean"] > 0.95
    lo, hi = r["balanced_accuracy_3"]["ci95"]
    assert lo <= r["balanced_accuracy_3"]["mean"] <= hi + 1e-9
    assert r["screening_auc"]["mean"] > 0.98
    assert r["oof_probabilities"].shape == (len(labels), 4)
    # Shuffled labels: the same head is at chance, and the interval says so.
    bags.labels = rng.permutation(labels)
    r = cross_validate(bags, head, CLASSES, folds=5, repeats=2)
    assert r["balanced_accuracy_3"]["mean"] < 0.6


def test_bootstrap_interval_brackets_a_fixed_metric():
    labels = np.array([0, 1] * 20)
    probs = np.eye(4)[labels]
    assert bootstrap_interval(probs, labels, lambda p, t: float((p.argmax(1) == t).mean()), n=50) == (1.0, 1.0)


def test_slab_means_and_csf_features():
    feats = np.arange(8, dtype=float)[:, None]
    assert slab_means(feats, 2).tolist() == [1.5, 5.5]
    img = np.zeros((1, 30, 30, 3), np.uint8)
    img[0, 5:25, 5:25] = 100  # brain
    img[0, 12:18, 12:18] = 35  # a dark (CSF-like) patch in the centre
    f = csf_features(img)
    assert f.shape == (1, 13)
    assert f[0, 0] == 0  # nothing below 30
    assert f[0, 1] == pytest.approx(36 / 400)  # below 40: the patch, as a share of the brain
    assert f[0, 6] == pytest.approx(400 / 900)  # brain area


def test_augmented_slice_head_fits_on_both_copies_and_tests_on_clean():
    """slice-linear-aug = slice-linear fitted on the clean slices and their perturbed copies, tested on clean."""
    from diseaseid.train.subject_heads import slice_linear, slice_linear_augmented

    rng = np.random.default_rng(0)
    train = [{"final": rng.normal(c, 1.0, (4, 3)), "final_aug": rng.normal(c, 3.0, (4, 3))} for c in (0, 0, 2, 2)]
    y = np.array([0, 0, 1, 1])
    test = [{"final": rng.normal(c, 1.0, (4, 3))} for c in (0, 2)]
    got = slice_linear_augmented(train, y, test, l2=1.0)
    merged = [{"final": np.concatenate([b["final"], b["final_aug"]])} for b in train]
    want = slice_linear(merged, y, test, l2=1.0, balanced=False)
    assert np.allclose(got.subject_probs, want.subject_probs)
    clean_only = slice_linear(train, y, test, l2=1.0, balanced=False)
    assert not np.allclose(got.subject_probs, clean_only.subject_probs)  # the copies were used
    # three copies: the keys final_aug, final_aug_2, final_aug_3, all of them read
    for b in train:
        b["final_aug_2"], b["final_aug_3"] = rng.normal(b["final"], 2.0), rng.normal(b["final"], 4.0)
    got3 = slice_linear_augmented(train, y, test, l2=1.0, copies=3)
    merged3 = [{"final": np.concatenate([b["final"], b["final_aug"], b["final_aug_2"], b["final_aug_3"]])}
               for b in train]
    assert np.allclose(got3.subject_probs, slice_linear(merged3, y, test, l2=1.0, balanced=False).subject_probs)
    assert not np.allclose(got3.subject_probs, got.subject_probs)
    assert got.subject_probs[0].argmax() == 0 and got.subject_probs[1].argmax() == 1


def test_choice_nested_picks_inside_the_training_subjects():
    """The nested choice scores each candidate by an inner CV of the training subjects only and refits the
    winner: with one candidate that always answers class 0, the informative one is chosen."""
    from diseaseid.train.subject_heads import HeadResult, nested

    calls = []

    def make(name):
        def head(tr, y, te):
            calls.append((name, len(tr)))
            if name == "constant":
                p = np.zeros((len(te), 4))
                p[:, 0] = 1
                return HeadResult(p)
            p = np.full((len(te), 4), 0.01)
            for i, b in enumerate(te):
                p[i, int(b["label"])] = 0.97
            return HeadResult(p)
        return head

    y = np.array([0, 1, 2] * 8)
    bags = [{"label": v} for v in y]
    out = nested(make, ("constant", "oracle"), inner_folds=4)(bags[:18], y[:18], bags[18:])
    assert np.array_equal(out.subject_probs.argmax(1), y[18:])
    assert all(n <= 18 for _, n in calls)  # never fitted on the test subjects
    assert calls[-1] == ("oracle", 18)  # the winner refitted on every training subject


def test_ship_dementia_augmented_takes_a_copy_count():
    """``--augmented`` alone is one perturbed copy (as before), ``--augmented 3`` three; other counts are refused
    (only 0, 1 and 3 have cross-validated heads); each count names its cross-validated head."""
    import argparse

    from diseaseid.cli import dementia
    from diseaseid.train.dementia_models import _augmented_head
    from diseaseid.train.subject_heads import HEADS

    parser = argparse.ArgumentParser()
    dementia.register(parser.add_subparsers())
    assert parser.parse_args(["ship-dementia"]).augmented == 0
    assert parser.parse_args(["ship-dementia", "--augmented"]).augmented == 1
    assert parser.parse_args(["ship-dementia", "--augmented", "3"]).augmented == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["ship-dementia", "--augmented", "2"])
    for copies, suffix in ((0, ""), (1, "-aug"), (3, "-aug3")):
        for base in ("slice-linear", "student-slice-linear"):
            assert _augmented_head(base, copies) == base + suffix and base + suffix in HEADS
