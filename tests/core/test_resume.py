"""Long runs survive interruption: a run stopped after epoch 1 and resumed ends with the same weights as one
run straight through; consistent distillation's cached teacher logits equal the online teacher's."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diseaseid.cli import main
from diseaseid.data.augment import acquisition, apply_params, augment, sample_params


def _train(tmp_path, fixtures_dir, out, *extra):
    return main(["train", "--task", "tumor", "--model", "convnet2", "--widths", "4,6,8",
                 "--data", str(fixtures_dir / "tumor"), "--split", str(tmp_path / "split.json"),
                 "--epochs", "3", "--batch-size", "4", "--lr", "3e-3", "--warmup-epochs", "0.5",
                 "--patience", "9", "--out", str(out), "--quiet", *extra])


def test_stopped_and_resumed_run_equals_straight_run(tmp_path, fixtures_dir):
    assert _train(tmp_path, fixtures_dir, tmp_path / "straight") == 0
    assert _train(tmp_path, fixtures_dir, tmp_path / "resumed", "--stop-after", "1") == 0
    first = json.loads((tmp_path / "resumed" / "student.json").read_text())
    assert [row["epoch"] for row in first["history"]] == [1]
    assert _train(tmp_path, fixtures_dir, tmp_path / "resumed", "--resume") == 0
    a = load_file(str(tmp_path / "straight" / "student.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "student.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ca = json.loads((tmp_path / "straight" / "student.json").read_text())
    cb = json.loads((tmp_path / "resumed" / "student.json").read_text())
    assert [r["train_loss"] for r in ca["history"]] == [r["train_loss"] for r in cb["history"]]
    assert len(cb["history"]) == 3
    # Another configuration must not silently continue this checkpoint.
    with pytest.raises(ValueError, match="another configuration"):
        _train(tmp_path, fixtures_dir, tmp_path / "resumed", "--resume", "--lr", "1e-3")


def test_view_parameters_reproduce_augment():
    x = torch.rand(5, 3, 32, 32)
    gen = torch.Generator().manual_seed(3)
    params = sample_params(5, generator=gen)
    again = acquisition(apply_params(x, params), generator=gen)  # the views, then the acquisition changes
    assert torch.equal(augment(x, generator=torch.Generator().manual_seed(3)), again)
    identity = apply_params(x, torch.zeros(5, 6))
    assert torch.allclose(identity, x, atol=1e-5)
    assert not torch.allclose(again, x, atol=1e-2)


def test_cached_view_logits_equal_the_online_teacher(tmp_path, fixtures_dir):
    from diseaseid.models import load_model
    from diseaseid.train.trainer import DeviceImages, teacher_view_logits, view_params

    assert _train(tmp_path, fixtures_dir, tmp_path / "t", "--epochs", "1") == 0
    teacher, _ = load_model(tmp_path / "t" / "student.safetensors")
    from diseaseid.data.dataset import ImageFolder
    from diseaseid.tasks import get_task

    ds = ImageFolder.scan(fixtures_dir / "tumor", get_task("tumor"))
    images = DeviceImages(ds.images, torch.device("cpu"))
    views = view_params(len(ds), 3, seed=0)
    assert torch.equal(views, view_params(len(ds), 3, seed=0))
    assert not torch.equal(views[0], views[1])
    cached = teacher_view_logits(teacher, images, views)
    assert cached.shape == (3, len(ds), 4)
    # The online teacher on view 2 of images 3 and 1, batched differently, gives the same logits.
    idx = torch.tensor([3, 1])
    with torch.no_grad():
        online = teacher(images.batch(idx, views=views[2][idx]))
    assert torch.allclose(cached[2][idx], online, atol=1e-5)
    assert not torch.allclose(cached[0][idx], online, atol=1e-3)


def test_kd_views_run_writes_its_cache_and_reuses_it(tmp_path, fixtures_dir):
    assert _train(tmp_path, fixtures_dir, tmp_path / "t", "--epochs", "1") == 0
    teacher = str(tmp_path / "t" / "student.safetensors")
    out = tmp_path / "kd"
    assert _train(tmp_path, fixtures_dir, out, "--teacher", teacher, "--kd-views", "2", "--epochs", "2") == 0
    caches = list((out / "kd-cache").glob("*.pt"))
    assert len(caches) == 1
    logits = torch.load(caches[0])
    assert logits.shape[0] == 2 and np.isfinite(logits.numpy()).all()
