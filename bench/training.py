"""Training speed on this machine: milliseconds per training image (forward + backward + AdamW step) for the
teacher and the students, float32 vs bf16 autocast, with and without channels-last, at 224 and lower
resolutions. ``python -m bench --only training``; the table in docs/training.md comes from it."""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from diseaseid.models import create_model
from diseaseid.train.trainer import autocast

SETTINGS = (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True))


def ms_per_image(arch: str, size: int, precision: str, channels_last: bool, batch: int = 32, steps: int = 3
                 ) -> float:
    torch.manual_seed(0)
    model = create_model(arch, num_classes=4, **({"pretrained": False} if arch.startswith("lite") else {}))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    x = torch.randn(batch, 3, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (batch,))
    times = []
    for _ in range(steps + 1):  # the first step warms up (allocations, kernel selection)
        t = time.perf_counter()
        with autocast(torch.device("cpu"), precision):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return min(times[1:]) / batch * 1000


def run(quick: bool = False) -> dict:
    cases = [("lite0", 224), ("lite0", 160), ("lite0", 128), ("lite0_stage5", 224), ("convnet1", 224),
             ("convnet2", 224)]
    if quick:
        cases = [("lite0", 160), ("convnet1", 224)]
    print(f"ms per training image, batch 32, {torch.get_num_threads()} threads (min of 3 steps after a warm-up)")
    print(f"{'model':12s} {'px':>4s} " + " ".join(f"{p + ('+CL' if cl else ''):>9s}" for p, cl in SETTINGS))
    out = {}
    for arch, size in cases:
        if arch.startswith("convnet") and size != 224:
            continue
        row = {}
        for precision, cl in SETTINGS:
            row[f"{precision}{'_channels_last' if cl else ''}"] = ms_per_image(arch, size, precision, cl,
                                                                              steps=2 if quick else 3)
        out[f"{arch}@{size}"] = row
        print(f"{arch:12s} {size:4d} " + " ".join(f"{v:9.1f}" for v in row.values()), flush=True)
    return out
