"""The Gaussian after a Lite0's input median (``--input-smooth``): scipy's filter, commuting with normalisation,
weights that load as before, explanations of the filtered slice, and a served graph with the smoothing in it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from diseaseid.models._registry import create_model
from diseaseid.models.median import MedianConv2d, input_filter, input_smooth_of, median3, smooth


@pytest.mark.parametrize("sigma", [0.5, 1.3])
def test_smooth_is_scipys_gaussian_with_the_border_replicated(sigma):
    x = torch.randn(2, 3, 19, 23, generator=torch.Generator().manual_seed(0))
    expected = ndimage.gaussian_filter(x.double().numpy(), (0, 0, sigma, sigma), mode="nearest")
    np.testing.assert_allclose(smooth(x, sigma).numpy(), expected, atol=1e-6)
    assert smooth(x, 0.0) is x


def test_filter_is_the_median_then_the_gaussian_and_commutes_with_normalisation():
    from diseaseid.data.tensors import normalize

    images = np.random.default_rng(5).integers(0, 256, (2, 31, 37, 3), dtype=np.uint8)
    x = normalize(images, "cpu")
    np.testing.assert_allclose(input_filter(x, 0.5).numpy(), smooth(median3(x), 0.5).numpy())
    assert not torch.allclose(input_filter(x, 0.5), median3(x), atol=1e-2)
    # what the served graph computes: the median of the bytes, normalised, then smoothed
    served = smooth(normalize(median3(torch.from_numpy(images).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy(),
                              "cpu"), 0.5)
    np.testing.assert_allclose(served.numpy(), input_filter(x, 0.5).numpy(), atol=1e-5)


@pytest.fixture(scope="module")
def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    """The shipped tumor student's weights with the median only and with the median and a 0.5 px Gaussian."""
    from diseaseid.models.checkpoint import load_model
    from diseaseid.serving.predictor import shipped_weights

    shipped, card = load_model(shipped_weights("tumor", "student"))
    median_only = create_model(card["arch"], pretrained=False, input_median=True)
    smoothed = create_model(card["arch"], pretrained=False, input_median=True, input_smooth=0.5)
    median_only.load_state_dict(shipped.state_dict())
    smoothed.load_state_dict(shipped.state_dict())  # the same names: the smoothing is no parameter
    return median_only.eval(), smoothed.eval()


def test_the_model_reads_the_smoothed_median(models):
    median_only, smoothed = models
    assert input_smooth_of(smoothed) == 0.5 and input_smooth_of(median_only) == 0.0
    assert isinstance(smoothed.conv_stem, MedianConv2d) and smoothed.conv_stem.input_smooth == 0.5
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    plain = create_model("lite0_stage5", pretrained=False).eval()
    plain.load_state_dict(smoothed.state_dict())
    with torch.no_grad():
        np.testing.assert_allclose(smoothed(x).numpy(), plain(smooth(median3(x), 0.5)).numpy(), atol=1e-5)
        assert not torch.allclose(smoothed(x), median_only(x), atol=1e-3)


def test_explanations_are_those_of_the_filtered_slice(models):
    from diseaseid.explain.maps import explain_maps

    median_only, smoothed = models
    plain = create_model("lite0_stage5", pretrained=False).eval()
    plain.load_state_dict(smoothed.state_dict())
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    target = torch.tensor([0, 3])
    ours, _ = explain_maps(smoothed, x, ("lrp", "gradcam"), target=target)
    theirs, _ = explain_maps(plain, input_filter(x, 0.5), ("lrp", "gradcam"), target=target)
    median_maps, _ = explain_maps(median_only, x, ("lrp", "gradcam"), target=target)
    for method in ("lrp", "gradcam"):
        scale = np.abs(theirs[method]).max()
        np.testing.assert_allclose(ours[method], theirs[method], rtol=1e-4, atol=1e-4 * scale)
        assert np.abs(median_maps[method] - theirs[method]).max() > 1e-2 * scale  # the smoothing matters here


def test_served_graph_keeps_the_smoothing(tmp_path, models):
    from diseaseid.data.tensors import normalize
    from tests.core.test_input_median import exported_logits

    median_only, smoothed = models
    images = np.random.default_rng(3).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    _, logits = exported_logits(smoothed, {"input_median": True, "input_smooth": 0.5}, tmp_path, images)
    with torch.no_grad():
        expected = smoothed(normalize(images, "cpu")).numpy()
        without = median_only(normalize(images, "cpu")).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert np.abs(logits - without).max() > 1e-2  # the smoothing is in the graph


def test_smoothing_needs_the_median_and_a_sigma_not_below_zero():
    from diseaseid.train.config import TrainConfig

    assert TrainConfig(task="tumor", model="lite0_stage5", input_median=True, input_smooth=0.5).model_args() == {
        "input_median": True, "input_smooth": 0.5}
    assert any("--input-smooth smooths the input median" in p
               for p in TrainConfig(task="tumor", model="lite0", input_smooth=0.5).problems())
    assert any("--input-smooth must not be negative" in p
               for p in TrainConfig(task="tumor", model="lite0", input_median=True, input_smooth=-1).problems())
    with pytest.raises(ValueError, match="needs input_median"):
        create_model("lite0", pretrained=False, input_smooth=0.5)
