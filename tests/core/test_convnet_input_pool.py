"""ConvNet(input_pool=k): the blocks read the input averaged over k x k pixels; the gate still reads it whole."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diseaseid.data.tensors import normalize
from diseaseid.explain.maps import explain_maps
from diseaseid.models import create_model
from diseaseid.train.config import TrainConfig


def _image() -> np.ndarray:
    """224 x 224 x 3 uint8: a textured head in the middle 96 x 96, zero elsewhere."""
    rng = np.random.default_rng(1)
    img = np.zeros((224, 224, 3), np.uint8)
    img[64:160, 64:160] = rng.integers(30, 240, (96, 96, 1), dtype=np.uint8)
    return img


def _pair(mask: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A pooled ConvNet1 and a plain one built for 112-pixel inputs, with the same weights."""
    torch.manual_seed(0)
    pooled = create_model("convnet1", num_classes=4, input_pool=2, mask_background=mask).eval()
    plain = create_model("convnet1", num_classes=4, image_size=112, mask_background=mask).eval()
    plain.load_state_dict(pooled.state_dict())
    return pooled, plain


def test_the_blocks_read_the_averaged_input():
    pooled, plain = _pair(mask=False)
    assert pooled.final_size == plain.final_size == 5 and pooled.num_features == 54 * 5 * 5
    x = normalize(_image())
    with torch.no_grad():
        expected = plain(F.avg_pool2d(x, 2))
        assert torch.allclose(pooled(x), expected, atol=1e-5)
        # detail finer than the pool is gone: a 2 x 2 checkerboard of the same mean gives the same answer
        board = x.clone()
        board[:, :, 64:160:2, 64:160:2] += 0.5
        board[:, :, 65:160:2, 65:160:2] += 0.5
        board[:, :, 64:160:2, 65:160:2] -= 0.5
        board[:, :, 65:160:2, 64:160:2] -= 0.5
        assert torch.allclose(pooled(board), pooled(x), atol=1e-5)
        assert not torch.allclose(plain(board[..., ::2, ::2]), plain(x[..., ::2, ::2]), atol=1e-3)


def test_no_pool_keeps_the_model_as_it_was():
    torch.manual_seed(0)
    a = create_model("convnet1", num_classes=4)
    torch.manual_seed(0)
    b = create_model("convnet1", num_classes=4, input_pool=1)
    assert a.input_pool is None and b.input_pool is None
    assert a.state_dict().keys() == b.state_dict().keys()
    x = normalize(_image())
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))


def test_the_gate_reads_the_whole_input():
    pooled, _ = _pair(mask=True)
    x = normalize(_image())
    f = pooled.forward_features(x)[0]
    # cells of the 5 x 5 map hold a head pixel where the full-resolution head (64..159) reaches them
    held = (f != 0).any(dim=0)
    assert held.any() and not held.all()
    assert not held[0].any() and not held[:, 0].any() and not held[-1].any() and not held[:, -1].any()


def test_lrp_goes_through_the_pool_and_stays_near_the_head():
    pooled, _ = _pair(mask=True)
    with torch.no_grad():
        for m in pooled.modules():  # non-trivial shifts: the background's activation is not zero by chance
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.uniform_(0.1, 0.5)
    x = normalize(_image())
    with torch.enable_grad():
        maps, _ = explain_maps(pooled, x.clone(), ("lrp",))
    lrp = maps["lrp"][0]
    assert lrp.shape == (224, 224) and np.abs(lrp[64:160, 64:160]).sum() > 0
    # the gate keeps the cells 1..3 of 5 (the head spans 64..159); their receptive fields (46 pixels at stride
    # 16 of the pooled input: 92 at 32 here) reach pixels 32..187, and no relevance lies beyond
    far = np.ones((224, 224), bool)
    far[24:200, 24:200] = False
    assert np.abs(lrp[far]).max() == 0
    # the pool doubled the reach: without it nothing above pixel 48 gets relevance
    assert np.abs(lrp[:40]).max() > 0 or np.abs(lrp[:, :40]).max() > 0


def test_bad_pools_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        create_model("convnet1", num_classes=4, input_pool=0)
    with pytest.raises(ValueError, match="convnet"):
        TrainConfig(model="lite0", input_pool=2).model_args()
    assert TrainConfig(model="convnet1", input_pool=2).model_args() == {"input_pool": 2}
    assert "input_pool" not in TrainConfig(model="convnet1").model_args()
