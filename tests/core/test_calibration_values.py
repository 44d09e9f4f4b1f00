"""The calibration summary by value: the shipped temperature is the one fitted on all the data, and the
'before' and 'after' figures are what their names say (the card copies these keys)."""
from __future__ import annotations

import numpy as np
import pytest

from diseaseid.train.calibration import calibration_summary, fit_temperature
from diseaseid.train.metrics import expected_calibration_error, nll, softmax


def test_calibration_summary_values():
    rng = np.random.default_rng(3)
    n, k = 600, 4
    labels = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), labels] += 1.2
    logits *= 3.0
    s = calibration_summary(logits, labels)
    assert set(s) == {"temperature", "ece_before", "ece_after", "nll_before", "nll_after", "method"}
    assert s["temperature"] == pytest.approx(fit_temperature(logits, labels), rel=1e-9)
    assert s["ece_before"] == pytest.approx(expected_calibration_error(softmax(logits), labels))
    assert s["nll_before"] == pytest.approx(nll(softmax(logits), labels))
    # 'after': each half scored with the temperature fitted on the other half (2-fold cross-fitting)
    idx = np.random.default_rng(0).permutation(n)
    a, b = idx[: n // 2], idx[n // 2:]
    after = np.zeros((n, k))
    after[b] = softmax(logits[b], fit_temperature(logits[a], labels[a]))
    after[a] = softmax(logits[a], fit_temperature(logits[b], labels[b]))
    assert s["nll_after"] == pytest.approx(nll(after, labels), rel=1e-6)
    assert s["ece_after"] == pytest.approx(expected_calibration_error(after, labels), rel=1e-6)
    assert s["nll_after"] < s["nll_before"] and "cross-fitting" in s["method"]
