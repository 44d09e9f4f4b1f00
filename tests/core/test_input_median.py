"""The 3 x 3 median in front of a Lite0's stem (``--input-median``): an exact median, weights that load with or
without it, explanations of the filtered slice, and a served graph with the filter in it."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from diseaseid.models._registry import create_model
from diseaseid.models.median import MedianConv2d, median3


def reference_median(x: torch.Tensor) -> torch.Tensor:
    """Each pixel's 3 x 3 window sorted, its fifth value; the border replicated."""
    n, c, h, w = x.shape
    windows = F.pad(x, (1, 1, 1, 1), mode="replicate").unfold(2, 3, 1).unfold(3, 3, 1).reshape(n, c, h, w, 9)
    return windows.sort(dim=-1).values[..., 4]


def test_median_of_every_zero_one_window():
    # A network of minima and maxima that picks the median of every 0/1 window picks it of any values (the
    # 0-1 principle): all 512 windows, at the centre of a 3 x 3 image.
    windows = torch.tensor(list(itertools.product([0.0, 1.0], repeat=9))).view(512, 1, 3, 3)
    assert torch.equal(median3(windows)[:, 0, 1, 1], windows.view(512, 9).sort(dim=1).values[:, 4])


@pytest.mark.parametrize("shape", [(2, 3, 17, 23), (1, 1, 1, 5), (1, 2, 2, 2)])
def test_median_equals_sorting_each_window_border_included(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(median3(x), reference_median(x))


def test_median_equals_opencv_on_a_noisy_slice():
    import cv2

    from diseaseid.data.preprocess import decode_image
    from tests.conftest import FIXTURES

    image = decode_image(next(iter(sorted((FIXTURES / "tumor" / "glioma").glob("*.jpg")))))
    noisy = np.clip(image.astype(np.float32) + np.random.default_rng(0).normal(0, 12, image.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    ours = median3(torch.from_numpy(noisy).permute(2, 0, 1)[None].float())[0].permute(1, 2, 0).numpy()
    assert np.array_equal(ours.astype(np.uint8), cv2.medianBlur(noisy, 3))
    assert not np.array_equal(noisy, cv2.medianBlur(noisy, 3))  # the check is not vacuous


def test_median_of_bytes_is_opencvs_and_commutes_with_normalisation():
    # The served graph filters the uint8 pixels, the model the normalised ones: the same values to the bit,
    # since normalisation is increasing in each channel (``without_input_median``).
    import cv2

    from diseaseid.data.tensors import normalize

    images = np.random.default_rng(5).integers(0, 256, (2, 31, 37, 3), dtype=np.uint8)
    filtered_bytes = median3(torch.from_numpy(images).permute(0, 3, 1, 2))
    assert filtered_bytes.dtype == torch.uint8
    for image, ours in zip(images, filtered_bytes, strict=True):
        assert np.array_equal(ours.permute(1, 2, 0).numpy(), cv2.medianBlur(image, 3))
    filtered = filtered_bytes.permute(0, 2, 3, 1).numpy()
    assert torch.equal(median3(normalize(images, "cpu")), normalize(filtered, "cpu"))


def test_without_input_median_shares_the_parameters_and_leaves_the_model_alone():
    from diseaseid.models.median import without_input_median

    filtered = create_model("lite0_stage5", pretrained=False, input_median=True).eval()
    plain = without_input_median(filtered)
    assert isinstance(filtered.conv_stem, MedianConv2d)  # the model itself keeps its filter
    assert type(plain.conv_stem) is torch.nn.Conv2d and plain.conv_stem.weight is filtered.conv_stem.weight
    assert plain.blocks is filtered.blocks
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(plain(median3(x)), filtered(x))
        assert not torch.allclose(plain(x), filtered(x), atol=1e-3)
    assert without_input_median(create_model("lite0_stage5", pretrained=False)) is None


@pytest.fixture(scope="module")
def models() -> tuple[torch.nn.Module, torch.nn.Module]:
    """The shipped tumor student's weights without and with the filter (they load into both: the same names)."""
    from diseaseid.models.checkpoint import load_model
    from diseaseid.serving.predictor import shipped_weights

    shipped, card = load_model(shipped_weights("tumor", "student"))
    args = {k: v for k, v in card.get("arch_args", {}).items() if k != "input_median"}
    plain = create_model(card["arch"], pretrained=False, **args)
    filtered = create_model(card["arch"], pretrained=False, input_median=True, **args)
    plain.load_state_dict(shipped.state_dict())
    filtered.load_state_dict(shipped.state_dict())
    return plain.eval(), filtered.eval()


def noisy_slices() -> torch.Tensor:
    """Two tumor fixture slices under Rician noise (sigma 10 of 255), normalised as the models read them."""
    from diseaseid.data.preprocess import decode_image
    from diseaseid.data.tensors import normalize
    from tests.conftest import FIXTURES

    images = np.stack([decode_image(next(iter(sorted((FIXTURES / "tumor" / c).glob("*.jpg")))))
                       for c in ("glioma", "pituitary")]).astype(np.float32)
    rng = np.random.default_rng(4)
    noisy = np.hypot(images + rng.normal(0, 10, images.shape), rng.normal(0, 10, images.shape))
    return normalize(np.clip(np.round(noisy), 0, 255).astype(np.uint8), "cpu")


def test_weights_keep_their_names_and_the_model_reads_the_filtered_input(models):
    plain, filtered = models
    assert list(plain.state_dict()) == list(filtered.state_dict())
    assert isinstance(filtered.conv_stem, MedianConv2d) and not isinstance(plain.conv_stem, MedianConv2d)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(filtered(x), plain(median3(x)), atol=1e-6)
        assert not torch.allclose(filtered(x), plain(x), atol=1e-3)


def test_explanations_are_those_of_the_filtered_slice(models):
    from diseaseid.explain.maps import explain_maps

    plain, filtered = models
    x = noisy_slices()
    target = torch.tensor([0, 3])
    ours, _ = explain_maps(filtered, x, ("lrp", "gradcam"), target=target)
    theirs, _ = explain_maps(plain, median3(x), ("lrp", "gradcam"), target=target)
    unfiltered, _ = explain_maps(plain, x, ("lrp", "gradcam"), target=target)
    for method in ("lrp", "gradcam"):
        scale = np.abs(theirs[method]).max()
        np.testing.assert_allclose(ours[method], theirs[method], rtol=1e-4, atol=1e-4 * scale)
        assert np.abs(unfiltered[method] - theirs[method]).max() > 1e-2 * scale  # the filter matters here
    # The gradient map goes through the filter: each output pixel's gradient lands on its median's pixel. The
    # explainers' graph folds BatchNorm, so a few pre-activations on a ReLU6 boundary round the other way than in
    # the model itself (0.4% of these pixels differed beyond rtol 1e-4 in one run); passing the gradient straight
    # through the filter moved 87% of them.
    grad, _ = explain_maps(filtered, x, ("gradient",), target=target)
    xr = x.clone().requires_grad_(True)
    filtered(xr).gather(1, target[:, None]).sum().backward()
    reference = xr.grad.abs().amax(dim=1).numpy()
    off = np.abs(grad["gradient"] - reference) > 1e-3 * reference.max()
    assert off.mean() < 0.02, off.mean()
    assert np.corrcoef(grad["gradient"].ravel(), reference.ravel())[0, 1] > 0.99


def exported_logits(model: torch.nn.Module, arch_args: dict, folder, images: np.ndarray):
    """``model`` (a tumor lite0_stage5) saved with ``arch_args`` in its card and exported as served (the export
    refuses logits further from PyTorch's than its tolerance): (the graph's path, its logits of ``images``)."""
    import onnxruntime as ort

    from diseaseid.models.checkpoint import save_model
    from diseaseid.serving.export import export_graph

    card = {"task": "tumor", "role": "student", "arch": "lite0_stage5", "arch_args": arch_args,
            "classes": ["glioma", "meningioma", "notumor", "pituitary"]}
    weights = save_model(model, folder / "student.safetensors", card, dtype=torch.float32)
    graph = export_graph(weights, folder / "student.onnx")
    session = ort.InferenceSession(str(graph.path), providers=["CPUExecutionProvider"])
    return graph.path, session.run(["logits"], {session.get_inputs()[0].name: images})[0]


def test_served_graph_keeps_the_filter(tmp_path, models):
    from diseaseid.data.tensors import normalize

    _, filtered = models
    images = np.random.default_rng(3).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    path, logits = exported_logits(filtered, {"input_median": True}, tmp_path, images)
    with torch.no_grad():
        expected = filtered(normalize(images, "cpu")).numpy()
        unfiltered = create_model("lite0_stage5", pretrained=False).eval()
        unfiltered.load_state_dict(filtered.state_dict())
        without = unfiltered(normalize(images, "cpu")).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert np.abs(logits - without).max() > 1e-2  # the filter is in the graph
    import onnx

    # ... and runs on the bytes, before the cast to float
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.input)}
    ops = [(node.op_type, types.get(node.input[0])) for node in model.graph.node if node.op_type in ("Min", "Max")]
    assert len(ops) == 18 and {t for _, t in ops} == {onnx.TensorProto.UINT8}, ops


def test_the_filter_is_refused_for_a_model_without_a_lite0_stem():
    from diseaseid.train.config import TrainConfig

    with pytest.raises(ValueError, match="--input-median filters a Lite0's stem"):
        TrainConfig(task="dementia", model="convnet1", input_median=True).model_args()
    assert TrainConfig(task="tumor", model="lite0_stage5", input_median=True).model_args() == {"input_median": True}
