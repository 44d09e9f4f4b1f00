"""Weight averaging of a run's last epochs (diseaseid.train.averaging), checked by value."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from diseaseid.train.averaging import average_states, read_snapshots, reestimate_batchnorm
from diseaseid.train.trainer import DeviceImages


def test_average_states_is_the_uniform_mean_and_keeps_integer_buffers_of_the_last():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor(7)}
    c = {"w": torch.tensor([5.0, 1.0]), "n": torch.tensor(9)}
    out = average_states([a, b, c])
    assert torch.allclose(out["w"], torch.tensor([3.0, 3.0]))
    assert out["n"].item() == 9 and out["n"].dtype == torch.int64
    with pytest.raises(ValueError, match="keys"):
        average_states([a, {"w": a["w"]}])
    with pytest.raises(ValueError):
        average_states([])


def test_batchnorm_statistics_are_those_of_the_images_seen():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, bias=False)
    bn = nn.BatchNorm2d(4)
    model = nn.Sequential(conv, bn).eval()
    bn.running_mean.fill_(5.0)
    bn.running_var.fill_(9.0)
    rng = np.random.default_rng(1)
    images = DeviceImages(rng.integers(0, 256, (10, 8, 8, 3), dtype=np.uint8), torch.device("cpu"))
    assert reestimate_batchnorm(model, images, n=10, batch_size=4) == 1
    assert not model.training and bn.momentum == 0.1
    # momentum None: the cumulative average of the per-batch statistics (batches of 4, 4, 2 seeded images)
    means, variances = [], []
    idx = torch.from_numpy(np.random.default_rng(0).permutation(10))
    for i in range(0, 10, 4):
        with torch.no_grad():
            f = conv(images.batch(idx[i:i + 4]))
        means.append(f.mean(dim=(0, 2, 3)))
        variances.append(f.var(dim=(0, 2, 3), unbiased=True))
    assert torch.allclose(bn.running_mean, torch.stack(means).mean(0), atol=1e-5)
    assert torch.allclose(bn.running_var, torch.stack(variances).mean(0), atol=1e-4)
    assert not torch.allclose(bn.running_mean, torch.full((4,), 5.0))


def _snapshot(tmp_path, epoch, value, config=None):
    p = tmp_path / f"s{epoch}.pt"
    torch.save({"config": config or {"task": "tumor", "model": "convnet1"}, "epoch": epoch, "epochs": 4,
                "seconds": 1.0, "history": [], "model": {"w": torch.tensor([float(value)])}}, p)
    return p


def test_read_snapshots_takes_the_highest_epochs_and_refuses_another_run(tmp_path):
    paths = [_snapshot(tmp_path, e, 10 * e) for e in (3, 1, 4, 2)]
    _, snaps = read_snapshots(paths, last=2)
    assert [s["epoch"] for s in snaps] == [3, 4]
    assert average_states([s["model"] for s in snaps])["w"].item() == 35.0
    with pytest.raises(ValueError, match="5 epochs asked"):
        read_snapshots(paths, last=5)
    other = _snapshot(tmp_path, 9, 0, config={"task": "tumor", "model": "lite0"})
    with pytest.raises(ValueError, match="another run"):
        read_snapshots([*paths, other], last=2)
