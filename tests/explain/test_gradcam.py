"""Grad-CAM, Grad-CAM++ and HiResCAM equal the pytorch-grad-cam package on the same model and layer."""
from __future__ import annotations

import warnings

import pytest
import torch

from diseaseid.explain.gradcam import GradCAM
from tests.explain.conftest import ARCHS, batch, build, toy

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402


def reference(model, x, targets, variant: str):
    cls = {"gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "hirescam": pgc.HiResCAM}[variant]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with cls(model=model, target_layers=[model.get_submodule(model.gradcam_layer)]) as cam:
            maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    return torch.from_numpy(maps)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("variant", ["gradcam", "gradcam++", "hirescam"])
def test_equals_pytorch_grad_cam(arch, variant):
    # Both in float64: float32 kernels differ by CPU (8.5e-4 relative on an Intel Xeon with AMX), and
    # the maps' normalisation to [0, 1] magnifies that; the package hands its maps back in float32.
    model = build(arch).double()
    x = batch(arch, 2, dtype=torch.float64)
    ours = GradCAM.for_model(model, variant=variant)(x)
    assert ours.maps.shape == (2, *x.shape[-2:])
    assert float(ours.maps.min()) >= 0.0 and float(ours.maps.max()) <= 1.0
    assert torch.equal(ours.targets, ours.logits.argmax(1))
    theirs = reference(model, x, ours.targets, variant).double()
    # float32 rounding of the package's output (6e-8) is what is left; a wrong weighting or gradient differs by
    # orders of magnitude more.
    assert float((ours.maps - theirs).abs().max()) <= 1e-6


def test_explicit_target_and_a_layer_inside_a_residual_block():
    model = toy()
    x = torch.randn(2, 3, 32, 32)
    ours = GradCAM(model)(x, target=[3, 1])  # "block": the output of the residual sum
    assert ours.targets.tolist() == [3, 1]
    theirs = reference(model, x, [3, 1], "gradcam")
    assert float((ours.maps - theirs).abs().max()) <= 1e-5


def test_a_layer_folded_away_is_still_found():
    model = build("convnet1")
    cam = GradCAM(model, layer="features.3.0")  # a convolution whose BatchNorm is merged into it
    assert not cam.graph.folded
    maps = cam(batch("convnet1", 1)).maps
    assert maps.shape == (1, 224, 224)
