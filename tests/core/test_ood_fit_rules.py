"""The fitting rules behind the OOD figures of issue 24, by value (no model, no data): the cross-fitted rates of
the shipped threshold rule (``ood.fit.cross_fitted_rates``) and the docs/ood.md table that reports them.

The cases are built so that the expected rate holds for every random halving of the groups: one unusual slice
in one of ``n`` equal groups is flagged exactly when its group is on the measured side, which is once per split
(of two directions), so the mean is 1 / (number of slices), whatever the seeds."""
from __future__ import annotations

import json

import numpy as np
import pytest

from diseaseid.ood.fit import change_threshold, cross_fitted_rate, cross_fitted_rates, table

GROUPS = [f"g{i}" for i in range(8) for _ in range(5)]  # 8 groups of 5 slices
N = len(GROUPS)


def case(clean_outlier: int | None = None, perturbed_outlier: int | None = None, checked: int | None = None):
    clean, perturbed = np.ones(N), np.ones(N)  # equal scores: none lies over the other half's highest
    if clean_outlier is not None:
        clean[clean_outlier] = 50.0
    if perturbed_outlier is not None:
        perturbed[perturbed_outlier] = 50.0
    clean_checked = np.zeros(N, bool)
    if checked is not None:
        clean_checked[checked] = True
    return clean, clean_checked, perturbed, np.zeros(N, bool)


@pytest.mark.parametrize("splits", [1, 7])
def test_one_unusual_clean_slice_counts_once_per_split(splits):
    """Budget 0: the threshold is the highest score of the fitted half; the unusual slice is flagged only when
    measured (its group on the other side), so the mean clean rate is 1/N and nothing perturbed is flagged.
    Measuring on the fitted half (a planted bug) gives 0, and a threshold from all slices gives 0 too."""
    clean, rate_perturbed = cross_fitted_rates(*case(clean_outlier=12), GROUPS, max_flagged=0.0, splits=splits)
    assert clean == pytest.approx(1 / N) and rate_perturbed == 0.0


def test_an_unusual_perturbed_slice_counts_for_the_perturbed_rate_only():
    clean, perturbed = cross_fitted_rates(*case(perturbed_outlier=30), GROUPS, max_flagged=0.0, splits=5)
    assert clean == 0.0 and perturbed == pytest.approx(1 / N)


def test_a_slice_the_image_checks_flag_is_flagged_whatever_its_score():
    clean, perturbed = cross_fitted_rates(*case(checked=7), GROUPS, max_flagged=0.0, splits=5)
    assert clean == pytest.approx(1 / N) and perturbed == 0.0


def test_the_budget_is_spent_on_clean_and_perturbed_slices_together():
    """Each half fits its threshold on 40 slices (20 clean, 20 perturbed) and a budget of 1/40 lets one pass:
    an unusual clean slice (group g0, 50) and an unusual perturbed one (group g1, 40). On one side, the one
    present passes by the budget and sets nothing; measured on the other side, each is flagged once per split:
    1/N both. Were the threshold fitted on the clean slices alone (budget 0 of 20), a half holding g0 would
    set it at 50 and the perturbed 40 of the other half would pass: the perturbed rate would fall below 1/N
    in every split that parts g0 and g1."""
    clean, clean_checked, perturbed, perturbed_checked = case(clean_outlier=0)
    perturbed[5] = 40.0
    got = cross_fitted_rates(clean, clean_checked, perturbed, perturbed_checked, GROUPS, max_flagged=1 / 40,
                             splits=6)
    assert got == (pytest.approx(1 / N), pytest.approx(1 / N))


def test_the_splits_are_seeded():
    scores = np.random.default_rng(5).gamma(2, 1, (2, N))
    checked = np.zeros(N, bool)
    first = cross_fitted_rates(scores[0], checked, scores[1], checked, GROUPS, 0.05, splits=4)
    assert first == cross_fitted_rates(scores[0], checked, scores[1], checked, GROUPS, 0.05, splits=4)
    assert 0 < first[0] < 0.5


def test_a_floor_from_the_change_rule_holds_in_every_half():
    """The change rule's threshold (fitted on other slices) is a floor under each half's threshold: above the
    unusual slice's 50 it is never flagged; below it, the half's own threshold decides as before."""
    args = (*case(clean_outlier=12), GROUPS)
    assert cross_fitted_rates(*args, max_flagged=0.0, splits=3, floor=60.0) == (0.0, 0.0)
    assert cross_fitted_rates(*args, max_flagged=0.0, splits=3, floor=10.0) == (pytest.approx(1 / N), 0.0)
    clean, checked = case(clean_outlier=12)[:2]
    assert cross_fitted_rate(clean, checked, GROUPS, 0.0, floor=60.0) == 0.0
    assert cross_fitted_rate(clean, checked, GROUPS, 0.0) == pytest.approx(1 / N)


def test_the_change_rule_takes_the_change_that_needs_the_highest_threshold():
    """At most 2% of 100 slices per change: change A (scores 1..100) needs 98 (flags 100 and 99), change B (one
    far tail of 5 slices) 52 (flags 54 and 53). Change C's two slices the image checks flag (scores 0 and 0.07)
    are left out: of its other 98 (up to 7.0), at most 1 may be flagged, so its threshold is its second highest.
    A change whose every slice the checks flag sets nothing."""
    a = np.arange(1.0, 101.0)
    b = np.ones(100)
    b[:5] = [50.0, 51.0, 52.0, 53.0, 54.0]
    c = np.linspace(0.0, 7.0, 100)
    c_checked = np.zeros(100, bool)
    c_checked[:2] = True
    none = np.zeros(100, bool)
    every = np.ones(100, bool)
    threshold, binding, own = change_threshold({"A": (a, none), "B": (b, none), "C": (c, c_checked),
                                                "D": (np.full(100, 500.0), every)}, 0.02)
    assert (threshold, binding) == (98.0, "A")
    assert own == {"A": 98.0, "B": 52.0, "C": pytest.approx(np.sort(c)[-2])}
    assert int((a > threshold).sum()) == 2 and int((b > own["B"]).sum()) == 2
    assert change_threshold({}, 0.02) == (-np.inf, None, {})


def write_card(folder, task: str, **extra) -> None:
    card = {"detector": {"name": "tumor/student:lite0_stage5", "version": "308083816571"}, "threshold": 50.57,
            "val_mri_flagged": 0.00349, "fitted_on": {"val_slices": 1144}, "val_mri_flagged_cross_fitted": 0.00349,
            "val_perturbed_mri_flagged": 0.0044, "fixtures_flagged": [], "fixtures_n": 16,
            "non_mri": {"calibration": {"flagged": 0.99, "n": 103, "missed": ["a"]},
                        "heldout": {"flagged": 0.98, "n": 152, "missed": ["b:1", "c"]}}, **extra}
    (folder / task).mkdir()
    (folder / task / "ood.json").write_text(json.dumps(card))


def test_the_table_names_the_cross_fitted_rates_and_the_worst_family(tmp_path):
    write_card(tmp_path, "tumor", val_mri_flagged_cross_fitted_splits=0.003497, cross_fit_splits=20,
               val_perturbed_mri_flagged_by_family={"aspect": "1/99", "fov": "1/57", "pad": "1/77", "noise": "0/134"})
    write_card(tmp_path, "dementia")  # a card from before issue 24: one split, no families
    rows = table(tmp_path).splitlines()
    assert len(rows) == 4 and rows[1] == "|---|---|---:|---:|---:|---:|---:|---:|---|"
    assert rows[2] == ("| dementia | tumor/student:lite0_stage5 (308083816571) | 50.6 | 0.3% of 1144 (0.3%) | 0.4% | "
                       "0/16 | 99.0% of 103 | 98.0% of 152 | b:1, c |")
    assert rows[3] == ("| tumor | tumor/student:lite0_stage5 (308083816571) | 50.6 | "
                       "0.3% of 1144 (0.3% / 0.35% of 20) | 0.4% (fov 1/57) | 0/16 | 99.0% of 103 | 98.0% of 152 | "
                       "b:1, c |")


def test_the_table_names_no_worst_family_when_none_is_flagged(tmp_path):
    """A fit that flags no perturbed slice says so, rather than naming an arbitrary family as the worst."""
    write_card(tmp_path, "dementia", val_perturbed_mri_flagged=0.0, val_mri_flagged_cross_fitted_splits=0.0,
               cross_fit_splits=20, val_perturbed_mri_flagged_by_family={"aspect": "0/51", "gamma": "0/79"})
    row = table(tmp_path).splitlines()[2]
    assert "| 0.0% (none) |" in row and "aspect" not in row
