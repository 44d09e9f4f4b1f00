"""ConvNet(mask_background=True): the head crop's zero background reaches neither the answer nor the LRP map."""
from __future__ import annotations

import numpy as np
import torch

from diseaseid.data.tensors import normalize
from diseaseid.explain.maps import explain_maps
from diseaseid.models import create_model
from diseaseid.models.convnet import head_cells


def _head_image() -> np.ndarray:
    """224 x 224 x 3 uint8: a textured head in the middle 80 x 80, zero elsewhere."""
    rng = np.random.default_rng(0)
    img = np.zeros((224, 224, 3), np.uint8)
    img[72:152, 72:152] = rng.integers(40, 230, (80, 80, 1), dtype=np.uint8)
    return img


def _model(mask: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("convnet1", num_classes=4, mask_background=mask).eval()
    with torch.no_grad():  # non-trivial BatchNorm shifts, so the background's activation is not zero by chance
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.uniform_(0.1, 0.5)
    return model


def test_head_cells():
    x = normalize(_head_image())
    cells = head_cells(x, (12, 12))[0, 0]
    assert cells.shape == (12, 12)
    # 224 / 12 = 18.7 px a cell: the head (pixels 72..151) covers cells 3..8
    assert cells[3:9, 3:9].all() and cells.sum() == 36


def test_background_positions_do_not_reach_the_answer():
    x = normalize(_head_image())
    masked = _model(True)
    f = masked.forward_features(x)[0]
    cells = head_cells(x, f.shape[-2:])[0, 0].bool()
    assert (f[:, ~cells] == 0).all() and (f[:, cells] != 0).any()
    before = masked(x)
    with torch.no_grad():  # change every classifier weight that reads a background position
        w = masked.classifier.weight.view(4, f.shape[0], *f.shape[-2:])
        w[:, :, ~cells] += 1.0
    assert torch.allclose(masked(x), before)
    plain = _model(False)
    assert (plain.forward_features(x)[0][:, ~cells] != 0).any()


def test_lrp_puts_no_relevance_far_from_the_head():
    x = normalize(_head_image())
    far = np.ones((224, 224), bool)
    far[72 - 60:152 + 60, 72 - 60:152 + 60] = False  # beyond every receptive field that touches the head
    with torch.enable_grad():
        maps, _ = explain_maps(_model(True), x.clone(), ("lrp",))
    assert np.abs(maps["lrp"][0][far]).max() == 0
    with torch.enable_grad():
        plain, _ = explain_maps(_model(False), x.clone(), ("lrp",))
    assert np.abs(plain["lrp"][0][far]).max() > 0


def test_the_exported_gate_marks_the_same_cells():
    """The served graph's gate (``diseaseid.serving.export._head_cells_by_windows``: window sums by two matrix
    products, the channel test as the OR of the three channels) marks the cells ``head_cells`` marks: on images
    whose pixels are zero in some channels only, single head pixels on window edges, and every byte value in each
    channel, normalised as the services and as the served graph do."""
    from diseaseid.serving.export import ServedGraph, _head_cells_by_windows

    rng = np.random.default_rng(1)
    images = rng.integers(0, 3, (6, 224, 224, 3), dtype=np.uint8) * rng.integers(0, 2, (6, 224, 224, 1),
                                                                                   dtype=np.uint8)
    images[:3] *= (rng.random((3, 224, 224, 1)) < 0.002).astype(np.uint8)  # sparse head pixels
    images[3] = 0
    images[3, 18, 18] = (0, 0, 1)  # one byte of one channel, on the edge of a window of 224 -> 12
    images[4] = 0  # every byte value, in each channel, on a black image
    images[4, 100, :, 0] = np.arange(224)
    images[4, 150, :32, 1] = np.arange(224, 256)
    images[4, 200, :, 2] = np.arange(224)[::-1]
    images[5] = np.arange(224, dtype=np.uint8)[:, None, None] * np.array([0, 1, 0], np.uint8)
    graph = ServedGraph(torch.nn.Identity())
    for x in (normalize(images), (torch.from_numpy(images).permute(0, 3, 1, 2).float() - graph.mean) * graph.scale):
        for size in ((12, 12), (5, 5), (7, 9)):
            want, got = head_cells(x, size), _head_cells_by_windows(x, size)
            assert torch.equal(got, want), size
    # a pixel is head exactly where a byte of it is not zero
    assert torch.equal(head_cells(normalize(images), (224, 224))[:, 0].bool(),
                       torch.from_numpy(images.max(axis=3) > 0))
