"""Every registered model: forward, backward, shapes; the convnets' exact feature-map sizes; Lite0's weights."""
from __future__ import annotations

import pytest
import torch

from diseaseid.data.preprocess import to_uint8_rgb
from diseaseid.data.tensors import normalize
from diseaseid.models import count_parameters, create_model, feature_sizes, list_models, load_model, save_model


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name):
    model = create_model(name, num_classes=4, **({"pretrained": False} if name.startswith("lite0") else {}))
    model.train()
    x = torch.randn(2, 3, 224, 224)
    out = model(x)
    assert out.shape == (2, 4)
    out.sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
    assert isinstance(model.gradcam_layer, str) and dict(model.named_modules())[model.gradcam_layer] is not None
    assert model.get_classifier().out_features == 4


@pytest.mark.parametrize("name,widths,sizes", [("convnet1", [16, 36, 45, 54], [111, 54, 26, 12]),
                                               ("convnet2", [22, 34, 48], [111, 54, 26])])
def test_convnet_feature_maps(name, widths, sizes):
    model = create_model(name).eval()
    assert model.widths == widths
    assert feature_sizes(len(widths)) == sizes
    x = torch.zeros(1, 3, 224, 224)
    for block, (w, s) in zip(model.features, zip(widths, sizes)):
        x = block(x)
        assert tuple(x.shape) == (1, w, s, s)


def test_convnet_sizes_and_custom_widths():
    assert 70_000 <= count_parameters(create_model("convnet1")) <= 78_000  # "about 74k parameters"
    model = create_model("convnet2", widths=[8, 12, 16], dropout=0.3)
    assert model.widths == [8, 12, 16] and model(torch.zeros(1, 3, 224, 224)).shape == (1, 4)


def test_lite0_imagenet_weights_know_a_cat():
    skimage_data = pytest.importorskip("skimage.data")
    model = create_model("lite0", num_classes=1000).eval()
    with torch.no_grad():
        top = model(normalize(to_uint8_rgb(skimage_data.chelsea()))).softmax(1).topk(1)
    assert 281 <= int(top.indices) <= 285, "ImageNet classes 281-285 are domestic cats"
    assert float(top.values) > 0.3


def test_save_and_load_roundtrip(tmp_path):
    model = create_model("convnet2", widths=[8, 10, 12]).eval()
    card = {"task": "tumor", "arch": "convnet2", "arch_args": {"widths": [8, 10, 12]},
            "classes": ["a", "b", "c", "d"]}
    save_model(model, tmp_path / "m", card)
    loaded, read = load_model(tmp_path / "m.safetensors")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded(x), atol=5e-2)  # fp16 storage
    assert read["parameters"] == count_parameters(model) and len(read["version"]) == 12
