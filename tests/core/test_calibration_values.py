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
    assert s["nll_after"] < s["nll_before"]
    assert s["method"] == "temperature scaling fitted on validation; 'after' figures by 2-fold cross-fitting"


def nll_at(logits: np.ndarray, labels: np.ndarray, t: float) -> float:
    z = logits / t
    z = z - z.max(axis=1, keepdims=True)
    return float(-(z[np.arange(len(labels)), labels] - np.log(np.exp(z).sum(axis=1))).mean())


@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_fit_temperature_is_the_nll_minimiser(scale):
    """Against a bounded 1-D search of the float64 NLL: the fitted T is its minimiser to 3e-5 (LBFGS in float32
    or without its line search lands 1e-4 to 1e-3 away)."""
    from scipy.optimize import minimize_scalar

    rng = np.random.default_rng(11)
    n, k = 400, 4
    labels = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), labels] += 1.0
    logits *= scale
    best = minimize_scalar(lambda log_t: nll_at(logits, labels, np.exp(log_t)), bounds=(-3, 3), method="bounded",
                           options={"xatol": 1e-10})
    assert fit_temperature(logits, labels) == pytest.approx(float(np.exp(best.x)), rel=3e-5)
    # float32 logits and int32 labels (what a model and a dataset hand over) are fitted in float64 all the same
    logits32 = logits.astype(np.float32)
    best32 = minimize_scalar(lambda log_t: nll_at(logits32.astype(np.float64), labels, np.exp(log_t)),
                             bounds=(-3, 3), method="bounded", options={"xatol": 1e-10})
    assert fit_temperature(logits32, labels.astype(np.int32)) == pytest.approx(float(np.exp(best32.x)), rel=3e-5)
    # max_iter is the optimiser's: two iterations are not enough to get there
    assert abs(fit_temperature(logits, labels, max_iter=2) / np.exp(best.x) - 1) > 1e-3


def test_fit_temperature_is_clamped_to_its_bounds():
    """Degenerate validation sets end at the clamps, 0.05 and 20, not at 0 or infinity."""
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 1, (200, 3))
    separable = logits.argmax(axis=1)  # every answer right: the NLL falls as T -> 0
    assert fit_temperature(logits, separable) == 0.05
    wrong = logits.argmin(axis=1)  # every answer wrong: the NLL falls as T -> infinity
    assert fit_temperature(logits * 5, wrong) == 20.0
