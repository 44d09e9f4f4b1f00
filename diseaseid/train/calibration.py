"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks")."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from diseaseid.train.metrics import expected_calibration_error, nll, softmax


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T)."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def calibration_summary(logits: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict:
    """Fit T on all the given data (what is shipped) and report ECE/NLL before and after by 2-fold
    cross-fitting, so the 'after' figures are not measured on the data the temperature was fitted to."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(labels))
    folds = [idx[: len(idx) // 2], idx[len(idx) // 2:]]
    after = np.zeros((len(labels), logits.shape[1]))
    for fit, held in (folds, folds[::-1]):
        after[held] = softmax(logits[held], fit_temperature(logits[fit], labels[fit]))
    before = softmax(logits)
    return {
        "temperature": fit_temperature(logits, labels),
        "ece_before": expected_calibration_error(before, labels),
        "ece_after": expected_calibration_error(after, labels),
        "nll_before": nll(before, labels),
        "nll_after": nll(after, labels),
        "method": "temperature scaling fitted on validation; 'after' figures by 2-fold cross-fitting",
    }
