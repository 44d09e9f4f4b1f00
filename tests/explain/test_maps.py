"""``explain_maps``: the contract the services rely on."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diseaseid.data.dataset import ImageFolder
from diseaseid.data.tensors import normalize
from diseaseid.explain import explain_maps
from diseaseid.explain.gradcam import GradCAM
from diseaseid.explain.graph import compile_graph
from diseaseid.explain.lrp import LRP
from diseaseid.tasks import get_task
from tests.explain.conftest import batch, build


@pytest.fixture(scope="module")
def student(shipped):
    return shipped("tumor", "student")


@pytest.fixture(scope="module")
def slices(fixtures_dir):
    ds = ImageFolder.scan(fixtures_dir / "tumor", get_task("tumor"))
    return ds.images[[0, 4, 8, 12]]  # one per class


def test_contract_on_the_shipped_model(student, slices):
    x = normalize(slices)
    maps, targets = explain_maps(student.model, x)
    assert set(maps) == {"gradcam", "lrp"}
    for m in maps.values():
        assert m.shape == (4, 224, 224) and m.dtype == np.float32 and np.isfinite(m).all()
    assert maps["gradcam"].min() >= 0.0 and maps["gradcam"].max() <= 1.0
    assert targets.dtype == np.int64 and targets.shape == (4,)
    with torch.no_grad():
        assert targets.tolist() == student.model(x).argmax(1).tolist()


def test_maps_equal_the_explainers_called_alone():
    # float64 (the maps come back in float32): float32 kernels round differently on other CPUs (8.5e-4 on AMX)
    model = build("lite0").double()
    x = batch("lite0", 2, dtype=torch.float64)
    maps, targets = explain_maps(model, x, ("gradcam", "lrp", "gradient", "gradcam++", "hirescam"),
                                 target=[1, 2])
    assert targets.tolist() == [1, 2]
    assert np.allclose(maps["gradcam"], GradCAM.for_model(model)(x, [1, 2]).maps.numpy(), atol=1e-6)
    for variant in ("gradcam++", "hirescam"):
        alone = GradCAM.for_model(model, variant=variant)(x, [1, 2]).maps.numpy()
        assert np.allclose(maps[variant], alone, atol=1e-6)
    lrp = LRP.for_model(model)(x, [1, 2]).relevance.sum(1).numpy()
    assert np.allclose(maps["lrp"], lrp, rtol=1e-5, atol=1e-9)
    xr = x.clone().requires_grad_()
    model(xr)[[0, 1], [1, 2]].sum().backward()
    expected = xr.grad.abs().amax(1).numpy()
    # folding BatchNorm moves activations by ~1e-7, enough to flip a few ReLU6 gradients at 0 or 6 (the graph
    # without folding matches autograd to 1e-6: test_graph.py)
    assert np.linalg.norm(maps["gradient"] - expected) <= 1e-2 * np.linalg.norm(expected)


def test_one_target_for_all_and_a_single_method():
    model = build("convnet2")
    maps, targets = explain_maps(model, batch("convnet2", 3), methods=("lrp",), target=2)
    assert list(maps) == ["lrp"] and targets.tolist() == [2, 2, 2]


def test_bad_arguments():
    model = build("convnet2")
    with pytest.raises(ValueError, match="unknown method"):
        explain_maps(model, batch("convnet2", 1), methods=("shap",))
    with pytest.raises(ValueError):
        explain_maps(model, batch("convnet2", 1)[0])
    with pytest.raises(ValueError):
        explain_maps(model, batch("convnet2", 2), target=[0])


def test_preparation_is_cached_per_model_and_renewed_with_new_weights():
    model = build("convnet1")
    x = batch("convnet1", 1)
    explain_maps(model, x)
    graph, lrp = compile_graph(model), LRP.for_model(model)
    explain_maps(model, x)
    assert compile_graph(model) is graph and LRP.for_model(model) is lrp
    state = build("convnet1", seed=5).state_dict()
    model.load_state_dict(state)
    maps, _ = explain_maps(model, x)
    assert LRP.for_model(model) is not lrp
    fresh = build("convnet1", seed=5)
    expected, _ = explain_maps(fresh, x)
    assert np.allclose(maps["lrp"], expected["lrp"], rtol=1e-5, atol=1e-9)


def test_the_model_is_left_untouched():
    model = build("lite0")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    explain_maps(model, batch("lite0", 1), ("gradcam", "lrp", "gradient"))
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in model.parameters())
