"""Which way of fitting a dementia slice head changes fewest answers under realistic acquisition changes?

    .venv/bin/python -m dev.dementia_head_copies [student|teacher|WEIGHTS.safetensors] [--quick]

On the robustness sample (``diseaseid robustness``: 300 validation slices, seed 0) each recipe's head is fitted
without the sample's subjects, on the shipped model's features, and scored by the share of answers each
realistic perturbation changes (its level and seed as in the benchmark) and by its clean slice-balanced
accuracy. Recipes: clean slices only; beside one or three perturbed copies of every slice (seeds 7, 8, 9:
``ship-dementia --augmented 1|3``); three copies with the k leading directions of perturbation-induced
feature change projected out (nuisance projection), and three copies with a stronger L2. It chose
``--augmented 3`` (2026-12-05; docs/models.md). Features are cached, the sample's under runs/dem-exp/.

A weights file instead of a role scores a candidate network (e.g. a fine-tune not shipped yet) the same way;
``--quick`` stops after the three shipped recipes (clean only, one copy, three copies).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class HeldOut:
    """The robustness sample's split for a dementia slice model: the model, every slice's embeddings and their
    perturbed copies (``ship-dementia --augmented``'s seeds), and which slices are fit on (``train``: every
    subject but the sample's)."""

    ds: object
    model: object
    card: dict
    x_all: np.ndarray
    copies: list[np.ndarray]
    sample: object
    train: np.ndarray


def held_out(path: Path) -> HeldOut:
    """:class:`HeldOut` for the weights at ``path`` (embeddings cached by ``diseaseid.train.embeddings``)."""
    from diseaseid.data.dataset import ImageFolder
    from diseaseid.models import load_model
    from diseaseid.paths import task_data_dir
    from diseaseid.robustness.evaluate import load_sample
    from diseaseid.tasks import get_task
    from diseaseid.train.embeddings import PERTURBED_SEEDS, cached_model_embeddings, cached_perturbed_model_embeddings

    task = get_task("dementia")
    ds = ImageFolder.scan(task_data_dir(task), task)
    model, card = load_model(path)
    model.eval()
    x_all = cached_model_embeddings(ds, path)
    copies = [cached_perturbed_model_embeddings(ds, path, seed=s) for s in PERTURBED_SEEDS]
    sample = load_sample("dementia", 300, 0)
    position = {f: i for i, f in enumerate(ds.files)}
    held = {ds.subjects[position[f]] for f in sample.files}
    train = np.array([s not in held for s in ds.subjects])
    return HeldOut(ds, model, card, x_all, copies, sample, train)


def cached_arrays(path: Path, compute) -> dict[str, np.ndarray]:
    """The named arrays saved at ``path`` (``.npz``), or ``compute()``'s, saved there first."""
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = compute()
    np.savez(path, **arrays)
    return arrays


def sample_images(sample) -> dict[str, np.ndarray]:
    """The sample's slices decoded as served: clean, and under each realistic perturbation at its level and the
    benchmark's seed (the k-th perturbation's)."""
    from diseaseid.robustness.evaluate import _u8, decode
    from diseaseid.robustness.perturbations import PERTURBATIONS

    images = {"clean": np.stack([decode(_u8(r)) for r in sample.raws])}
    for k, pert in enumerate(PERTURBATIONS):
        if pert.realistic:
            rng = np.random.default_rng(k)
            images[pert.name] = np.stack([decode(pert.apply(r, rng)) for r in sample.raws])
    return images


def change_report(label: str, feats: dict[str, np.ndarray], w: np.ndarray, b: np.ndarray,
                  truth: np.ndarray) -> None:
    """Print a linear head's (``w``, ``b``) clean balanced accuracy on ``feats["clean"]`` and the share of its
    answers each other entry of ``feats`` (a perturbation's features) changes: mean, worst, how many above 10%,
    and which (every change above 10%, or the three largest when none is)."""
    from diseaseid.robustness.evaluate import held_out_scores

    clean = np.argmax(feats["clean"] @ w.T + b, 1)
    changed = {k: held_out_scores(truth, np.argmax(f @ w.T + b, 1), clean)["changed"]
               for k, f in feats.items() if k != "clean"}
    balanced = held_out_scores(truth, clean, None)["balanced_accuracy"]
    worst = [kv for kv in sorted(changed.items(), key=lambda kv: -kv[1]) if kv[1] > 0.10] or \
        sorted(changed.items(), key=lambda kv: -kv[1])[:3]
    print(f"{label}: clean balanced {balanced:.3f}, mean changed {np.mean(list(changed.values())):.3f}, worst "
          f"{max(changed.values()):.3f}, changes above 10%: {sum(v > 0.10 for v in changed.values())}, "
          f"{[(k, round(v, 3)) for k, v in worst]}", flush=True)


def main(role: str = "student", quick: bool = False) -> None:
    from sklearn.utils.extmath import randomized_svd

    from diseaseid.models import load_model
    from diseaseid.paths import weights_dir
    from diseaseid.train.embeddings import model_features
    from diseaseid.train.subject_heads import LinearHead

    start = time.time()
    out = Path("runs/dem-exp")
    out.mkdir(parents=True, exist_ok=True)
    path = Path(role) if role.endswith(".safetensors") else weights_dir() / "dementia" / f"{role}.safetensors"
    h = held_out(path)
    ds, model, card, x_all, copies, sample, train = h.ds, h.model, h.card, h.x_all, h.copies, h.sample, h.train
    role = card["role"]
    # A candidate not shipped yet has no fitted head: its role's shipped head strength.
    l2 = float(card["training"].get("l2") or load_model(weights_dir() / "dementia" / f"{role}.safetensors")[1]
               ["training"]["l2"])
    feats = cached_arrays(out / f"sample-{role}-{card['version']}.npz", lambda: {
        name: model_features(model, stack) for name, stack in sample_images(sample).items()})
    print(f"features ready in {time.time() - start:.0f} s", flush=True)
    y = ds.labels[train]
    x = x_all[train]

    def report(name: str, w: np.ndarray, b: np.ndarray) -> None:
        change_report(name, feats, w, b, sample.labels)

    def fit(xs: list[np.ndarray], strength: float = l2) -> tuple[np.ndarray, np.ndarray]:
        head = LinearHead(l2=strength).fit(np.concatenate(xs), np.tile(y, len(xs)))
        return head.weight, head.bias

    three = [x] + [c[train] for c in copies]
    report("clean only", *fit([x]))
    report("one copy", *fit([x, copies[0][train]]))
    report("three copies", *fit(three))
    if quick:
        print(f"done in {time.time() - start:.0f} s")
        return
    _, _, vt = randomized_svd(np.concatenate([c[train] - x for c in copies]), n_components=128, random_state=0)
    for k in (8, 32, 64, 128):
        v = vt[:k]
        w, b = fit([a - (a @ v.T) @ v for a in three])
        report(f"three copies, {k} nuisance directions out", w - (w @ v.T) @ v, b)
    for factor in (3.0, 10.0):
        report(f"three copies, L2 x{factor:g}", *fit(three, l2 * factor))
    print(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--quick"]
    main(*args[:1], quick="--quick" in sys.argv[1:])
