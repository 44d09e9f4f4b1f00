"""``explain-eval``: deletion/insertion faithfulness of LRP, Grad-CAM, the plain gradient and a random map on
validation slices of a task, with the shipped model."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from diseaseid.data.dataset import ImageFolder
from diseaseid.data.tensors import normalize
from diseaseid.explain.faithfulness import PATCH, Evaluation, perturbation_curves
from diseaseid.explain.lrp.composites import get_composite
from diseaseid.explain.maps import DEFAULT_COMPOSITE, explain_maps
from diseaseid.paths import fixtures_dir, split_path, task_data_dir
from diseaseid.serving.predictor import Predictor
from diseaseid.tasks import Task, get_task

BASELINES = ("gradcam", "gradcam++", "hirescam", "gradient", "random")


def validation_set(task: Task, n: int, seed: int = 0, data_dir: str | Path | None = None,
                   split_file: str | Path | None = None) -> tuple[ImageFolder, str]:
    """Up to ``n`` slices (a seeded random choice) from the task's validation split when the data and the
    split file (``splits/<task>.json``, key ``val``) are there; else from all the data found; else the test
    fixtures."""
    root = Path(data_dir) if data_dir else task_data_dir(task)
    if root.is_dir():
        ds, source = ImageFolder.scan(root, task), str(root)
    else:
        ds, source = ImageFolder.scan(fixtures_dir() / task.name, task), "test fixtures"
    split = Path(split_file) if split_file else split_path(task.name)
    if split.exists():
        known = set(ds.files)
        val = [f for f in json.loads(split.read_text()).get("val", []) if f in known]
        if val:
            ds, source = ds.select(val), f"{source}, validation split of {split.name}"
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(ds), size=min(n, len(ds)), replace=False))
    return ds.subset(pick), source


def evaluate(task_name: str, n: int = 64, role: str = "student", steps: int = 16, seed: int = 0,
             composites: list[str] | None = None, batch_size: int = 64, device: str = "cpu",
             data_dir: str | None = None, patch: int = PATCH, log=print) -> Evaluation:
    """Curves for LRP (one entry per composite; the first is the one ``explain_maps`` uses by default unless
    told otherwise), Grad-CAM, Grad-CAM++, the gradient and a random map."""
    task = get_task(task_name)
    predictor = Predictor.from_shipped(task.name, role, device)
    model = predictor.model
    ds, source = validation_set(task, n, seed, data_dir)
    images = ds.images
    chosen = [get_composite(c) for c in (composites or [DEFAULT_COMPOSITE])]
    lrp_names = ["lrp"] if len(chosen) == 1 else [f"lrp ({c.name})" for c in chosen]
    log(f"[explain-eval] {task.name}/{role}: {len(ds)} slices from {source}")
    t0 = time.perf_counter()
    maps: dict[str, list[np.ndarray]] = {m: [] for m in (*lrp_names, *BASELINES)}
    targets = []
    rng = np.random.default_rng(seed)
    for i in range(0, len(images), 8):
        x = normalize(images[i:i + 8], device)
        found, t = explain_maps(model, x, ("gradcam", "gradcam++", "hirescam", "gradient"))
        for name, composite in zip(lrp_names, chosen, strict=True):
            found[name] = explain_maps(model, x, ("lrp",), composite=composite)[0]["lrp"]
        found["random"] = rng.random((len(x), *x.shape[2:])).astype(np.float32)
        for m in maps:
            maps[m].append(found[m])
        targets.append(t)
    target = np.concatenate(targets)
    log(f"[explain-eval] maps in {time.perf_counter() - t0:.1f} s")
    evaluation = Evaluation(task.name, predictor.name, len(ds), steps, ", ".join(c.name for c in chosen),
                            patch, predictor.version, source)
    for method in maps:
        t1 = time.perf_counter()
        saliency = np.concatenate(maps[method])
        curves = perturbation_curves(model, images, saliency, target, steps, batch_size, seed, patch)
        evaluation.results[method] = curves.summary()
        r = evaluation.results[method]
        log(f"[explain-eval] {method:24s} deletion {r['deletion_auc']:.3f}  "
            f"insertion {r['insertion_auc']:.3f}  ({time.perf_counter() - t1:.1f} s)")
    return evaluation


def write(evaluation: Evaluation, out: str | Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{evaluation.task}-{evaluation.model.split('/')[1].split(':')[0]}"
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md"), stem.with_suffix(".png")]
    paths[0].write_text(json.dumps(evaluation.to_dict(), indent=2) + "\n")
    paths[1].write_text(evaluation.markdown())
    evaluation.plot(paths[2])
    return paths


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
