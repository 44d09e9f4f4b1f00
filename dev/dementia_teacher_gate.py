"""Does a head gate before the dementia teacher's global pool make its answers hold still?

    .venv/bin/python -m dev.dementia_teacher_gate

The shipped dementia teacher is the ImageNet Lite0, frozen, with a linear head on its globally pooled 1280
features. The pool averages the 7 x 7 final feature map over every cell, the head crop's zero background
included, so the head reads (and LRP and Grad-CAM show) the corners as well as the head. Here the cells that hold
no head pixel (``diseaseid.models.convnet.head_cells``, the student's gate) are left out of the pool:

- ``all``: the shipped mean over every cell (a check: equals the shipped features);
- ``head``: the mean over the head's cells only (size-invariant);
- ``zeroed``: the gated map averaged over every cell (the background cells count as zeros).

For each, a linear head is fitted as shipped (every slice and three perturbed copies, every subject but the
robustness sample's; the shipped L2 and x0.3 / x3) and scored on the sample as ``dev.dementia_head_copies``
scores heads; then, for ``all`` and ``zeroed`` with the shipped L2, the share of positive LRP and Grad-CAM
relevance inside the head on the sample's clean slices (``diseaseid.robustness.relevance``; ``zeroed`` as a
network: the gate of :func:`gated` before timm's global pool). An experiment, not served.

Measured 2026-12-06 (25 min on 2 cores, beside another run; features cached under runs/dem-exp/):

    pool     L2    clean balanced  mean changed  worst                 changes above 10%  relevance LRP / Grad-CAM
    all      x1    43.7%           21.0%         42.3% noise sigma 12  19                 81.0% / 78.0%
    all      x3    45.3%           18.7%         36.3% noise sigma 12  19
    head     x1    42.0%           20.7%         40.3% noise sigma 12  18
    zeroed   x1    41.7%           20.7%         41.3% noise sigma 12  19                 79.7% / 81.2%
    zeroed   x3    43.7%           19.9%         36.3% noise sigma 12  18

(``all`` with the shipped L2 is the shipped teacher's recipe on every subject but the sample's: its 43.7% is the
robustness table's held-out figure.) The gate changes neither the answers' stability nor where the relevance lies:
what LRP and Grad-CAM put outside the head comes through the receptive fields of the head's own cells (32 pixels
a cell, reaching far past the head's edge), not from the background cells. Not shipped.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

VARIANTS = ("all", "head", "zeroed")


def pooled_variants(model, images: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """N x 224 x 224 x 3 uint8 -> {variant: N x 1280} (module docstring)."""
    import torch

    from diseaseid.data.tensors import normalize
    from diseaseid.models.convnet import head_cells

    out: dict[str, list[np.ndarray]] = {v: [] for v in VARIANTS}
    with torch.inference_mode():
        for s in range(0, len(images), batch_size):
            x = normalize(images[s:s + batch_size])
            f = model.forward_features(x)
            m = head_cells(x, f.shape[-2:])
            gated = (f * m).sum(dim=(2, 3))
            out["all"].append(f.mean(dim=(2, 3)).numpy())
            out["head"].append((gated / m.sum(dim=(2, 3)).clamp(min=1)).numpy())
            out["zeroed"].append((gated / (f.shape[-1] * f.shape[-2])).numpy())
    return {v: np.concatenate(parts) for v, parts in out.items()}


def gated(model):
    """A copy of the timm Lite0 ``model`` whose final feature map passes the convnets' head gate
    (``diseaseid.models.convnet.HeadGate``) before the global pool."""
    import copy

    from diseaseid.models.convnet import HeadGate

    base = type(model)

    class Gated(base):
        def forward_features(self, x):
            return self.gate(super().forward_features(x), x)

    out = copy.deepcopy(model)
    out.__class__ = Gated
    out.gate = HeadGate()
    out.gradcam_layer = "gate"
    return out.eval()


def relevance(model, weight: np.ndarray, bias: np.ndarray, images: np.ndarray) -> dict:
    """{method: mean share of positive relevance inside the head} of ``model`` with the linear head (``weight``,
    ``bias``) on ``images``."""
    import copy
    from types import SimpleNamespace

    import torch

    from diseaseid.robustness.relevance import relevance_inside_head

    model = copy.deepcopy(model)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.as_tensor(weight))
        model.classifier.bias.copy_(torch.as_tensor(bias))
    shares = relevance_inside_head(SimpleNamespace(model=model.eval(), device=torch.device("cpu")), images)
    return {m: round(d["mean"], 3) for m, d in shares.items()}


def main() -> None:
    import torch

    from dev.dementia_head_copies import cached_arrays, change_report, held_out, sample_images
    from diseaseid.paths import weights_dir
    from diseaseid.robustness.evaluate import _u8, decode, perturbed_images
    from diseaseid.train.embeddings import PERTURBED_SEEDS
    from diseaseid.train.subject_heads import LinearHead

    torch.set_num_threads(2)
    start = time.time()
    h = held_out(weights_dir() / "dementia" / "teacher.safetensors")
    def compute() -> dict[str, np.ndarray]:
        out = {}
        for name, stack in [("train", h.ds.images)] + [(f"copy{s}", perturbed_images(h.ds, s)[0])
                                                        for s in PERTURBED_SEEDS]:
            out.update({f"{name}/{v}": x for v, x in pooled_variants(h.model, stack).items()})
            print(f"{name} in {time.time() - start:.0f} s", flush=True)
        for name, stack in sample_images(h.sample).items():
            out.update({f"sample:{name}/{v}": x for v, x in pooled_variants(h.model, stack).items()})
        return out

    saved = cached_arrays(Path("runs/dem-exp") / f"teacher-gate-{h.card['version']}.npz", compute)
    print(f"features ready in {time.time() - start:.0f} s; shipped features equal 'all' to "
          f"{np.abs(saved['train/all'] - h.x_all).max():.2e}", flush=True)
    y = h.ds.labels[h.train]
    l2 = float(h.card["training"]["l2"])
    for v in VARIANTS:
        xs = [saved[f"train/{v}"][h.train]] + [saved[f"copy{s}/{v}"][h.train] for s in PERTURBED_SEEDS]
        fs = {k.split(":", 1)[1].rsplit("/", 1)[0]: x for k, x in saved.items()
              if k.startswith("sample:") and k.endswith(f"/{v}")}
        for factor in (0.3, 1.0, 3.0):
            head = LinearHead(l2=l2 * factor).fit(np.concatenate(xs), np.tile(y, len(xs)))
            change_report(f"pool {v}, L2 x{factor:g}", fs, head.weight, head.bias, h.sample.labels)
            if factor == 1.0 and v != "head":
                network = gated(h.model) if v == "zeroed" else h.model
                clean = np.stack([decode(_u8(r)) for r in h.sample.raws])
                print(f"pool {v}: relevance inside the head {relevance(network, head.weight, head.bias, clean)}",
                      flush=True)
    print(f"done in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
