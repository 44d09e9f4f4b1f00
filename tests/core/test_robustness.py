"""diseaseid.robustness: the perturbations do what their documentation says, the scores count right, and the
relevance share measures where the mass lies."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from diseaseid.robustness.evaluate import decode, scores, summary
from diseaseid.robustness.perturbations import (
    PERTURBATIONS,
    aspect,
    bias_field,
    by_name,
    dicom16,
    gamma,
    grey_corners,
    jpeg,
    matrix,
    pad,
    perturbed_views,
    rician,
    scale,
    shift,
    window,
)
from diseaseid.robustness.relevance import inside_share
from tests.core.test_head_crop import phantom


@pytest.fixture
def raw():
    return phantom(208, 176)


def test_rician_noise_level(raw):
    rng = np.random.default_rng(0)
    out = rician(8.0)(raw, rng).astype(np.float64)
    background = out[raw == 0]
    # the magnitude of complex Gaussian noise with sigma 8 has mean sigma * sqrt(pi / 2) = 10.03
    assert background.mean() == pytest.approx(8 * np.sqrt(np.pi / 2), rel=0.05)
    tissue = out[raw == 150]
    assert tissue.mean() == pytest.approx(np.sqrt(150 ** 2 + 8 ** 2), abs=1.0)


def test_corners_only_where_dark_and_outside_the_ellipse(raw):
    out = grey_corners(12.0)(raw, np.random.default_rng(0))
    assert out[0, 0] == 12 and out[-1, -1] == 12
    assert out[104, 88] == raw[104, 88]  # the centre is untouched
    assert (out[raw > 0] == raw[raw > 0]).all()


def test_geometry(raw):
    rng = np.random.default_rng(0)
    padded = pad(16)(raw, rng)
    assert padded.shape == raw.shape and padded[:10].max() == 0
    assert matrix(512)(raw, rng).shape == (512, round(176 * 512 / 208))
    wide = aspect(1.25)(raw, rng)
    assert wide.shape == (208, 260) and wide[:, :40].max() == 0
    moved = shift(6)(raw, rng).astype(float)
    cy = lambda a: (a * np.arange(a.shape[0])[:, None]).sum() / a.sum()  # noqa: E731
    cx = lambda a: (a * np.arange(a.shape[1])[None, :]).sum() / a.sum()  # noqa: E731
    assert np.hypot(cy(moved) - cy(raw), cx(moved) - cx(raw)) == pytest.approx(6, abs=0.5)


def test_intensity_families(raw):
    rng = np.random.default_rng(0)
    assert scale(0.85)(raw, rng)[raw == 150].mean() == pytest.approx(127.5, abs=0.6)
    assert scale(1.15)(raw, rng).max() == 255  # the lesion's 240 clips
    assert gamma(0.8)(raw, rng)[raw == 150].mean() == pytest.approx(255 * (150 / 255) ** 0.8, abs=0.6)
    w = window(0.05, 0.10)(raw, rng)
    top = 240.0
    assert w[raw == 150].mean() == pytest.approx((150 - 0.05 * top) / (0.85 * top) * 255, abs=0.6)
    field = bias_field(0.2)(raw, rng)[raw == 150].astype(float) / 150
    assert 0.75 < field.min() < 0.95 and 1.05 < field.max() < 1.25


def test_jpeg_and_dicom16(raw):
    rng = np.random.default_rng(0)
    data = jpeg(50)(raw, rng)
    assert isinstance(data, bytes) and data[:3] == b"\xff\xd8\xff"
    back = np.asarray(Image.open(io.BytesIO(data)))
    assert np.abs(back.astype(float) - raw).mean() < 4
    stored = dicom16(False)(raw, rng)
    assert stored.dtype == np.uint16 and stored.min() == 1000 and stored.max() == 240 * 16 + 1000
    # 16-bit data scaled by its own range decodes to the same head as the 8-bit slice
    assert np.abs(decode(stored).astype(int) - decode(raw.astype(np.uint8)).astype(int)).mean() < 1.0


def test_every_perturbation_decodes(raw):
    rng = np.random.default_rng(1)
    for p in PERTURBATIONS:
        out = decode(p.apply(raw, rng))
        assert out.shape == (224, 224, 3) and out.dtype == np.uint8, p.name
    uploads, names = perturbed_views([raw, raw, raw], seed=3)
    assert len(uploads) == 3 and all(n in {p.name for p in PERTURBATIONS if p.realistic} for n in names)
    assert perturbed_views([raw], seed=3)[1][0] == names[0]  # seeded


def test_by_name():
    assert [p.level for p in by_name(["noise"])] == ["sigma 4", "sigma 8", "sigma 12"]
    assert [p.name for p in by_name(["pad:16 px"])] == ["pad:16 px"]
    with pytest.raises(KeyError, match="unknown perturbation"):
        by_name(["blur"])


def test_scores_and_summary():
    truth = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    clean = np.array([0, 0, 1, 1, 2, 2, 3, 0])
    labels = np.array([0, 1, 1, 1, 2, 2, 3, 0])
    flags = np.array([False, False, True, False, False, False, False, False])
    s = scores(truth, labels, flags, clean)
    assert s["accuracy"] == 6 / 8 and s["changed"] == 1 / 8 and s["flagged"] == 1 / 8
    assert s["served_accuracy"] == 5 / 8
    assert s["balanced_accuracy"] == pytest.approx((0.5 + 1 + 1 + 0.5) / 4)
    rows = [{"family": "clean", "level": "none", "realistic": True,
             "models": {"m": scores(truth, clean, np.zeros(8, bool), None)}},
            {"family": "noise", "level": "sigma 4", "realistic": True, "models": {"m": s}},
            {"family": "rotate", "level": "10 deg", "realistic": False,
             "models": {"m": scores(truth, np.zeros(8, int), np.ones(8, bool), clean)}}]
    out = summary({"task": "tumor", "rows": rows})["m"]
    assert out["clean"] == 7 / 8 and out["worst_drop"] == pytest.approx(1 / 8)
    assert out["worst_changed"] == 1 / 8 and out["worst_flagged_at"] == "noise:sigma 4"  # the unrealistic row ignored


def test_inside_share():
    head = np.zeros((2, 4, 4), bool)
    head[:, 1:3, 1:3] = True
    maps = np.zeros((2, 4, 4), np.float32)
    maps[0, 1, 1], maps[0, 0, 0], maps[0, 3, 3] = 3.0, 1.0, -5.0  # negative relevance is not counted
    share = inside_share(maps, head)
    assert share[0] == pytest.approx(0.75) and np.isnan(share[1])


def test_relevance_methods_are_the_explainers_and_each_is_measured():
    """``--relevance-methods`` offers every map the explainers make, and each method asked for is the one measured:
    on the tumor student (global pooling before its classifier) HiResCAM is Grad-CAM up to a factor, so their shares
    are equal, and LRP's is another."""
    from diseaseid.cli.robustness import RELEVANCE_METHODS
    from diseaseid.explain.maps import MAP_METHODS
    from diseaseid.robustness.relevance import relevance_inside_head
    from diseaseid.serving.predictor import Predictor
    from tests.conftest import FIXTURES

    assert sorted(RELEVANCE_METHODS) == sorted(MAP_METHODS)
    paths = sorted((FIXTURES / "tumor").glob("*/*.jpg"))[:4]
    images = np.stack([decode(np.asarray(Image.open(path).convert("L"))) for path in paths])
    predictor = Predictor.from_shipped("tumor", "student", runtime="torch")
    out = relevance_inside_head(predictor, images, ("hirescam", "gradcam", "lrp"), batch=2)
    assert set(out) == {"hirescam", "gradcam", "lrp"} and all(v["n"] == 4 for v in out.values())
    assert out["hirescam"]["mean"] == pytest.approx(out["gradcam"]["mean"], abs=1e-4)
    assert out["hirescam"]["min"] == pytest.approx(out["gradcam"]["min"], abs=1e-4)
    assert abs(out["lrp"]["mean"] - out["gradcam"]["mean"]) > 1e-3
    assert all(0.5 < v["mean"] <= 1.0 for v in out.values())  # the shipped model looks at the head


def test_held_out_scores_summary_and_table():
    from diseaseid.robustness.evaluate import held_out_scores
    from diseaseid.robustness.report import markdown

    truth = np.array([0, 0, 1, 1])
    clean, noisy = np.array([0, 1, 1, 1]), np.array([0, 0, 0, 1])
    h = held_out_scores(truth, noisy, clean)
    assert h["accuracy"] == 0.75 and h["changed"] == 0.5 and h["balanced_accuracy"] == 0.75
    base = scores(truth, clean, np.zeros(4, bool), None)
    rows = [{"family": "clean", "level": "none", "realistic": True,
             "models": {"student": {**base, "held_out": held_out_scores(truth, clean, None)}}},
            {"family": "noise", "level": "sigma 4", "realistic": True,
             "models": {"student": {**scores(truth, clean, np.zeros(4, bool), clean), "held_out": h}}}]
    result = {"task": "dementia", "n": 4, "seed": 0, "in_sample": True, "rows": rows,
              "models": {"student": {"version": "v", "name": "n", "preprocess": "head-v1"}},
              "held_out": {"student": {"subjects": 127}}}
    result["summary"] = summary(result)
    held = result["summary"]["student"]["held_out"]
    assert held["clean"] == pytest.approx(0.75) and held["worst_changed"] == 0.5
    table = markdown({"dementia": result})
    assert "student on 127 subjects" in table and "| noise | sigma 4 | 75.0 | 50.0 |" in table


def test_held_out_head_reads_the_classifier_input():
    """With the shipped head's own weights, a HeldOutHead answers exactly as the shipped network does: its
    features are the ones the classifier reads."""
    import torch

    from diseaseid.models import load_model
    from diseaseid.paths import weights_dir
    from diseaseid.robustness.held_out import HeldOutHead, frozen_head_l2

    model, card = load_model(weights_dir() / "dementia" / "student.safetensors")
    assert frozen_head_l2(card) == card["training"]["l2"] and frozen_head_l2({"training": {}}) is None
    rng = np.random.default_rng(0)
    images = np.stack([decode(np.clip(phantom(208, 176) * rng.uniform(0.7, 1.2), 0, 255).astype(np.uint8))
                       for _ in range(6)])
    w = model.classifier.weight.detach().numpy().astype(np.float64)
    b = model.classifier.bias.detach().numpy().astype(np.float64)
    w = w + rng.normal(0, w.std(), w.shape)  # a different head, so the check is not argmax(model) by accident
    head = HeldOutHead(model.eval(), w, b, 1)
    from diseaseid.data.tensors import normalize

    with torch.no_grad():
        x = normalize(images)
        feats = {}
        hook = model.classifier.register_forward_hook(lambda m, i, o: feats.setdefault("x", i[0]))
        model(x)
        hook.remove()
    expected = np.argmax(feats["x"].double().numpy() @ w.T + b, axis=1)
    assert (head.labels(images) == expected).all()


def test_perturbed_copies_read_from_the_card():
    """The held-out refit uses as many perturbed copies as the shipped head was fitted beside: the recorded
    count, else one for a recipe that names an acquisition change (cards before the count), else none."""
    from diseaseid.robustness.held_out import perturbed_copies

    assert perturbed_copies({"training": {"perturbed_copies": 3, "recipe": "x"}}) == 3
    assert perturbed_copies({"training": {"perturbed_copies": 0, "recipe": "... acquisition change"}}) == 0
    assert perturbed_copies({"training": {"recipe": "... one copy under a random realistic acquisition change"}}) == 1
    assert perturbed_copies({"training": {"recipe": "logistic regression on every slice"}}) == 0
    assert perturbed_copies({}) == 0
