"""The training losses by value. The KD loss on a batch against a hand computation; ``batch_loss`` (the loss
``fit`` minimises, without training) is the label-smoothed cross-entropy of the configuration, or Hinton's
distillation loss with the configuration's T, weights and smoothing when a teacher speaks;
``loss_class_weights`` are the inverse class frequencies (mean 1); and the label smoothing of the configuration
actually reaches the loss that ``fit`` minimises (plain and distilled)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diseaseid.data.dataset import ImageFolder
from diseaseid.models._registry import create_model
from diseaseid.models.checkpoint import load_model, save_model
from diseaseid.tasks import get_task
from diseaseid.train.config import TrainConfig
from diseaseid.train.distill import distillation_loss
from diseaseid.train.trainer import DeviceImages, batch_loss, fit, loss_class_weights

S = [[1.0, 2.0, 0.5, -1.0], [0.3, -0.7, 2.2, 0.1], [-1.5, 0.4, 0.0, 3.0]]
TEACH = [[0.0, 3.0, 1.0, 0.0], [2.0, -1.0, 1.5, 0.5], [0.2, 0.1, -2.0, 4.0]]
Y = [1, 2, 0]


def _softmax(row: list[float], t: float = 1.0) -> list[float]:
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


def _hand_kd(T: float, ws: float, wc: float, eps: float = 0.0, weights: list[float] | None = None) -> float:
    """Hinton's loss written out: KL summed over classes and averaged over the batch (``batchmean``), times
    T^2; cross-entropy with label smoothing ``eps`` (target (1-eps) one-hot + eps/K), a weighted mean when
    class ``weights`` are given (PyTorch: sum of w_y * loss / sum of w_y; checked here without smoothing)."""
    k = len(S[0])
    kl = 0.0
    for s, t in zip(S, TEACH):
        ps, pt = _softmax(s, T), _softmax(t, T)
        kl += sum(q * math.log(q / p) for p, q in zip(ps, pt))
    kl /= len(S)
    w = weights or [1.0] * k
    num = den = 0.0
    for s, y in zip(S, Y):
        logp = [math.log(p) for p in _softmax(s)]
        target = [(1 - eps) * (c == y) + eps / k for c in range(k)]
        num += -sum(w[c] * target[c] * logp[c] for c in range(k))
        den += w[y]
    ce = num / den  # without weights: the mean over the batch
    return ws * T * T * kl + wc * ce


@pytest.mark.parametrize("T,ws,wc,eps", [(2.0, 0.7, 0.3, 0.0), (4.0, 0.5, 0.5, 0.2), (1.0, 1.0, 0.0, 0.0)])
def test_kd_loss_on_a_batch_matches_hand_computation(T, ws, wc, eps):
    got = distillation_loss(torch.tensor(S), torch.tensor(TEACH), torch.tensor(Y), temperature=T, w_soft=ws,
                            w_ce=wc, label_smoothing=eps)
    assert float(got) == pytest.approx(_hand_kd(T, ws, wc, eps), rel=1e-6, abs=1e-7)


def test_kd_loss_is_a_per_sample_mean():
    """A batch of the same sample twice has the loss of the sample alone (batchmean, not sum)."""
    s, t, y = torch.tensor(S[:1]), torch.tensor(TEACH[:1]), torch.tensor(Y[:1])
    one = distillation_loss(s, t, y, temperature=3.0, w_soft=1.0, w_ce=0.0)
    two = distillation_loss(s.repeat(2, 1), t.repeat(2, 1), y.repeat(2), temperature=3.0, w_soft=1.0, w_ce=0.0)
    assert float(one) > 0.01 and float(two) == pytest.approx(float(one), rel=1e-6)


def test_kd_loss_with_class_weights_matches_hand_computation():
    w = [1.0, 2.0, 0.5, 3.0]
    got = distillation_loss(torch.tensor(S), torch.tensor(TEACH), torch.tensor(Y), temperature=2.0, w_soft=0.4,
                            w_ce=0.6, label_smoothing=0.0, class_weights=torch.tensor(w))
    assert float(got) == pytest.approx(_hand_kd(2.0, 0.4, 0.6, 0.0, w), rel=1e-6)


# -- label smoothing inside fit ---------------------------------------------------------------------------

WIDTHS = [4, 4, 4]


@pytest.fixture(scope="module")
def tiny_tumor(fixtures_dir) -> ImageFolder:
    ds = ImageFolder.scan(fixtures_dir / "tumor", get_task("tumor"), per_class=2)
    assert len(ds) == 8
    return ds


def _config(**changes) -> TrainConfig:
    # lr 0: the weights stay as initialised, so the logged loss of the one step is the loss of the returned
    # model in train mode (BatchNorm on batch statistics, no dropout) on the whole training set.
    base = dict(task="tumor", model="convnet2", widths=WIDTHS, dropout=0.0, epochs=1, batch_size=8, lr=0.0,
                augment=False, warmup_epochs=0.0, device="cpu", precision="fp32", label_smoothing=0.4, seed=0)
    return TrainConfig(**{**base, **changes})


def _train_mode_logits(model: torch.nn.Module, ds: ImageFolder) -> torch.Tensor:
    images = DeviceImages(ds.images, torch.device("cpu"), channels_last=False)
    model.train()
    with torch.no_grad():
        return model(images.batch(torch.arange(len(ds)))).float()


def _assert_smoothing_discriminates(with_eps: float, without: float, logged: float) -> None:
    assert abs(with_eps - without) > 1e-3, "inputs too weak to tell smoothing from none; change the seed"
    assert logged == pytest.approx(with_eps, rel=1e-4, abs=1e-5)


@pytest.mark.slow
def test_fit_minimises_the_label_smoothed_cross_entropy(tiny_tumor):
    cfg = _config()
    result = fit(cfg, tiny_tumor, tiny_tumor, progress=False)
    logged = result.history[0]["train_loss"]
    logits = _train_mode_logits(result.model, tiny_tumor)
    y = torch.from_numpy(tiny_tumor.labels)
    smoothed = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing).item()
    plain = F.cross_entropy(logits, y).item()
    _assert_smoothing_discriminates(smoothed, plain, logged)


@pytest.mark.slow
def test_fit_passes_label_smoothing_to_the_distillation_loss(tiny_tumor, tmp_path: Path):
    torch.manual_seed(7)
    teacher = create_model("convnet2", num_classes=4, widths=WIDTHS, dropout=0.0)
    with torch.no_grad():
        teacher.classifier.weight.mul_(20)  # confident teacher: its logits differ from the student's
    path = save_model(teacher, tmp_path / "teacher", {"task": "tumor", "arch": "convnet2",
                                                      "arch_args": {"widths": WIDTHS, "dropout": 0.0},
                                                      "classes": list(get_task("tumor").classes)})
    cfg = _config(teacher=str(path), kd_temperature=3.0, w_soft=0.3, w_ce=0.7, kd_cache=True)
    result = fit(cfg, tiny_tumor, tiny_tumor, progress=False)
    logged = result.history[0]["train_loss"]
    student_logits = _train_mode_logits(result.model, tiny_tumor)
    loaded, _ = load_model(path)
    images = DeviceImages(tiny_tumor.images, torch.device("cpu"), channels_last=False)
    with torch.no_grad():
        teacher_logits = loaded.eval()(images.batch(torch.arange(len(tiny_tumor)))).float()
    y = torch.from_numpy(tiny_tumor.labels)
    args = (student_logits, teacher_logits, y, cfg.kd_temperature, cfg.w_soft, cfg.w_ce)
    smoothed = distillation_loss(*args, label_smoothing=cfg.label_smoothing).item()
    plain = distillation_loss(*args, label_smoothing=0.0).item()
    _assert_smoothing_discriminates(smoothed, plain, logged)
    assert np.isfinite(logged)


def test_kd_loss_defaults_are_hintons_settings():
    """T = 4, half soft and half hard, no smoothing: what a caller that passes nothing gets."""
    got = distillation_loss(torch.tensor(S), torch.tensor(TEACH), torch.tensor(Y))
    assert float(got) == pytest.approx(_hand_kd(4.0, 0.5, 0.5), rel=1e-6)


def hand_smoothed_ce(eps: float) -> float:
    k = len(S[0])
    total = 0.0
    for s, y in zip(S, Y):
        logp = [math.log(p) for p in _softmax(s)]
        total += -sum(((1 - eps) * (c == y) + eps / k) * logp[c] for c in range(k))
    return total / len(S)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_without_a_teacher_the_loss_is_the_label_smoothed_cross_entropy(eps):
    cfg = TrainConfig(label_smoothing=eps)
    got = batch_loss(cfg, torch.tensor(S), torch.tensor(Y), None, None)
    assert float(got) == pytest.approx(hand_smoothed_ce(eps), rel=1e-6)
    assert got.dtype == torch.float32
    half = batch_loss(cfg, torch.tensor(S, dtype=torch.bfloat16), torch.tensor(Y), None, None)
    assert half.dtype == torch.float32  # computed in float32 whatever the autocast dtype of the logits


def test_with_a_teacher_the_loss_is_hintons_with_the_configuration():
    cfg = TrainConfig(kd_temperature=2.5, w_soft=0.35, w_ce=0.65, label_smoothing=0.2)
    got = batch_loss(cfg, torch.tensor(S), torch.tensor(Y), torch.tensor(TEACH), None)
    assert float(got) == pytest.approx(_hand_kd(2.5, 0.35, 0.65, 0.2), rel=1e-6)
    plain = batch_loss(TrainConfig(label_smoothing=0.2), torch.tensor(S), torch.tensor(Y), None, None)
    assert float(got) != pytest.approx(float(plain), rel=1e-3)


def test_class_weights_reach_both_losses():
    w = torch.tensor([0.5, 2.0, 1.0, 3.0])
    cfg = TrainConfig(label_smoothing=0.0, kd_temperature=2.0, w_soft=0.7, w_ce=0.3)
    got = batch_loss(cfg, torch.tensor(S), torch.tensor(Y), None, w)
    assert float(got) == pytest.approx(_hand_kd(1.0, 0.0, 1.0, 0.0, w.tolist()), rel=1e-6)
    kd = batch_loss(cfg, torch.tensor(S), torch.tensor(Y), torch.tensor(TEACH), w)
    assert float(kd) == pytest.approx(_hand_kd(2.0, 0.7, 0.3, 0.0, w.tolist()), rel=1e-6)
    smoothed = batch_loss(TrainConfig(label_smoothing=0.1), torch.tensor(S), torch.tensor(Y), None, w)
    want = F.cross_entropy(torch.tensor(S), torch.tensor(Y), weight=w, label_smoothing=0.1)
    assert float(smoothed) == pytest.approx(float(want), rel=1e-6)


def test_loss_class_weights_are_inverse_frequencies():
    labels = np.array([0] * 6 + [1] * 2 + [3] * 4)
    assert loss_class_weights(TrainConfig(balanced=False), labels, 4, torch.device("cpu")) is None
    w = loss_class_weights(TrainConfig(balanced=True), labels, 4, torch.device("cpu"))
    # 12 images over 4 classes: 12 / count / 4; an absent class weighs 0
    assert w.dtype == torch.float32 and w.device == torch.device("cpu")
    assert w.tolist() == pytest.approx([0.5, 1.5, 0.0, 0.75])
    five = loss_class_weights(TrainConfig(balanced=True), np.array([0, 1, 1]), 5, torch.device("cpu"))
    assert five.tolist() == pytest.approx([3 / 1 / 5, 3 / 2 / 5, 0.0, 0.0, 0.0])
