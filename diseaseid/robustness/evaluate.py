"""Every shipped model of a task under every perturbation: accuracy, the share of answers that change, and
the share flagged as not a brain MRI, on a seeded, class-stratified sample of the task's validation slices.

Each slice is perturbed in its raw form (:mod:`~diseaseid.robustness.perturbations`), decoded by the serving
path (``to_uint8_rgb`` / ``decode_image``: head crop included) and answered by ``Predictor.predict``, so the OOD
verdict is the one a user would get. "Changed" compares the network's label with its label on the clean slice;
"served accuracy" counts an image flagged as not an MRI as a miss.

Where the shipped models saw the sample (dementia: fitted on every subject), each frozen-feature model is also
scored with its head refitted without the sample's subjects (:mod:`~diseaseid.robustness.held_out`), under
``models[role]["held_out"]``: the figures a new patient would get.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from diseaseid.robustness.perturbations import PERTURBATIONS, Perturbation, Upload, read_raw


@dataclass
class Sample:
    task: str
    files: list[str]
    labels: np.ndarray
    raws: list[np.ndarray]  # float32 H x W, 0..255
    in_sample: bool  # the shipped models saw these slices (dementia: fitted on every subject)


def load_sample(task: str, n: int, seed: int = 0) -> Sample:
    """``n`` validation slices of ``task`` (as equal a share per class as the split allows), raw."""

    from diseaseid.train.data import load_task_data

    _, val, _ = load_task_data(task)
    rng = np.random.default_rng(seed)
    classes = np.unique(val.labels)
    per_class = int(np.ceil(n / len(classes)))
    index = np.concatenate([rng.permutation(np.flatnonzero(val.labels == c))[:per_class] for c in classes])
    index = np.sort(rng.permutation(index)[:n])
    files = [val.files[i] for i in index]
    raws = [read_raw(val.root / f) for f in files]
    in_sample = task == "dementia"  # the shipped dementia models are fitted on all 160 subjects (their cards)
    return Sample(task, files, val.labels[index], raws, in_sample)


def decode(upload: Upload) -> np.ndarray:
    """What serving makes of an upload: 224 x 224 x 3 uint8, head-cropped."""
    from diseaseid.data.preprocess import decode_image, to_uint8_rgb

    return decode_image(upload) if isinstance(upload, bytes) else to_uint8_rgb(upload)


def answers(predictor, images: np.ndarray, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(network labels, OOD flags) of ``images``."""
    labels, flags = [], []
    for i in range(0, len(images), batch):
        for p in predictor.predict(images[i:i + batch]):
            labels.append(int(np.argmax(list(p.probabilities.values()))))
            flags.append(bool(p.ood))
    return np.array(labels), np.array(flags)


def held_out_scores(truth: np.ndarray, labels: np.ndarray, clean: np.ndarray | None) -> dict:
    from sklearn.metrics import balanced_accuracy_score

    out = {"accuracy": float((labels == truth).mean()),
           "balanced_accuracy": float(balanced_accuracy_score(truth, labels))}
    if clean is not None:
        out["changed"] = float((labels != clean).mean())
    return out


def scores(truth: np.ndarray, labels: np.ndarray, flags: np.ndarray, clean: np.ndarray | None) -> dict:
    from sklearn.metrics import balanced_accuracy_score

    served = np.where(flags, -1, labels)
    out = {"accuracy": float((labels == truth).mean()),
           "balanced_accuracy": float(balanced_accuracy_score(truth, labels)),
           "flagged": float(flags.mean()),
           "served_accuracy": float((served == truth).mean())}
    if clean is not None:
        out["changed"] = float((labels != clean).mean())
    return out


def evaluate_task(task: str, roles: tuple[str, ...] = ("teacher", "student"), n: int = 300, seed: int = 0,
                  perturbations: tuple[Perturbation, ...] = PERTURBATIONS, non_mri: bool = True,
                  log=print) -> dict:
    from diseaseid.serving.predictor import Predictor

    sample = load_sample(task, n, seed)
    predictors = {role: Predictor.from_shipped(task, role) for role in roles}
    start = time.perf_counter()
    clean_images = np.stack([decode(_u8(r)) for r in sample.raws])
    clean = {role: answers(p, clean_images) for role, p in predictors.items()}
    rows = [{"family": "clean", "level": "none", "realistic": True,
             "models": {role: scores(sample.labels, *clean[role], None) for role in roles}}]
    held = {}
    if sample.in_sample:
        from diseaseid.robustness.held_out import held_out_heads

        held = held_out_heads(task, roles, sample.files)
        held_clean = {role: h.labels(clean_images) for role, h in held.items()}
        for role in held:
            rows[0]["models"][role]["held_out"] = held_out_scores(sample.labels, held_clean[role], None)
    log(_row_text(task, rows[-1], time.perf_counter() - start))
    for k, pert in enumerate(perturbations):
        t0 = time.perf_counter()
        rng = np.random.default_rng(seed * 1000 + k)
        images = np.stack([decode(pert.apply(r, rng)) for r in sample.raws])
        models = {}
        for role, p in predictors.items():
            labels, flags = answers(p, images)
            models[role] = scores(sample.labels, labels, flags, clean[role][0])
            if role in held:
                models[role]["held_out"] = held_out_scores(sample.labels, held[role].labels(images),
                                                           held_clean[role])
        rows.append({"family": pert.family, "level": pert.level, "realistic": pert.realistic, "models": models})
        log(_row_text(task, rows[-1], time.perf_counter() - t0))
    result = {"task": task, "n": len(sample.files), "seed": seed, "in_sample": sample.in_sample,
              "models": {role: {"version": p.version, "name": p.name,
                                "preprocess": p.card.get("preprocess", {}).get("name", "resize (none recorded)")}
                         for role, p in predictors.items()},
              "rows": rows}
    if held:
        result["held_out"] = {role: {"subjects": h.subjects, "note": "head refitted without the sample's subjects"}
                              for role, h in held.items()}
    if non_mri:
        result["non_mri"] = non_mri_flagged(next(iter(predictors.values())))
        log(f"{task}: non-MRI images flagged {result['non_mri']['flagged']:.1%} of {result['non_mri']['n']}")
    result["summary"] = summary(result)
    return result


def non_mri_flagged(predictor, which: str = "heldout") -> dict:
    """The share of the held-out non-MRI images (decoded as an upload would be) that the task's detector flags."""
    from diseaseid.ood.images import family, non_mri

    images = non_mri(which)
    decoded = np.stack([decode(img) for img in images.values()])
    _, flags = answers(predictor, decoded)
    missed = [name for name, f in zip(images, flags) if not f]
    by_family: dict[str, list[bool]] = {}
    for name, f in zip(images, flags):
        by_family.setdefault(family(name), []).append(bool(f))
    return {"set": which, "n": len(flags), "flagged": float(flags.mean()), "missed": missed,
            "families": {k: f"{sum(v)}/{len(v)}" for k, v in sorted(by_family.items())}}


def summary(result: dict) -> dict:
    """Per model: clean accuracy, the worst realistic row's accuracy drop, changed share and flagged share."""
    out = {}
    clean = result["rows"][0]["models"]
    metric = "balanced_accuracy" if result["task"] == "dementia" else "accuracy"
    for role in clean:
        rows = [r for r in result["rows"][1:] if r["realistic"]]
        worst_drop = max(rows, key=lambda r: clean[role][metric] - r["models"][role][metric])
        worst_changed = max(rows, key=lambda r: r["models"][role]["changed"])
        worst_flagged = max(rows, key=lambda r: r["models"][role]["flagged"])
        out[role] = {
            "metric": metric, "clean": clean[role][metric], "clean_flagged": clean[role]["flagged"],
            "worst_drop": clean[role][metric] - worst_drop["models"][role][metric],
            "worst_drop_at": f"{worst_drop['family']}:{worst_drop['level']}",
            "worst_changed": worst_changed["models"][role]["changed"],
            "worst_changed_at": f"{worst_changed['family']}:{worst_changed['level']}",
            "worst_flagged": worst_flagged["models"][role]["flagged"],
            "worst_flagged_at": f"{worst_flagged['family']}:{worst_flagged['level']}",
        }
        if "held_out" in clean[role]:
            h = max(rows, key=lambda r: r["models"][role]["held_out"]["changed"])
            out[role]["held_out"] = {"clean": clean[role]["held_out"][metric],
                                     "worst_changed": h["models"][role]["held_out"]["changed"],
                                     "worst_changed_at": f"{h['family']}:{h['level']}"}
    return out


def _u8(raw: np.ndarray) -> np.ndarray:
    return np.clip(np.round(raw), 0, 255).astype(np.uint8)


def _row_text(task: str, row: dict, seconds: float) -> str:
    parts = [f"{role} acc {m['accuracy']:.3f} bal {m['balanced_accuracy']:.3f} flagged {m['flagged']:.3f}"
             + (f" changed {m['changed']:.3f}" if "changed" in m else "") for role, m in row["models"].items()]
    return f"{task} {row['family']}:{row['level']}: " + "; ".join(parts) + f" ({seconds:.0f} s)"


def change_images(ds, seed: int = 0, *, perturbation: Perturbation) -> np.ndarray:
    """Every slice of the image folder ``ds`` under ``perturbation`` (its random draws seeded), decoded as served:
    N x 224 x 224 x 3 uint8. Not cached: the OOD fit caches the features it takes from them."""

    rng = np.random.default_rng(seed)
    return np.stack([decode(perturbation.apply(read_raw(ds.root / f), rng)) for f in ds.files])


def perturbed_images(ds, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Each slice of the image folder ``ds`` under one random realistic perturbation, decoded as served
    (N x 224 x 224 x 3 uint8), and the perturbation's name per slice; cached by the data's fingerprint, the
    pre-processing's hash and the seed."""
    import json

    from diseaseid.paths import cache_dir
    from diseaseid.robustness.perturbations import perturbed_views

    path = cache_dir() / f"perturbed-{ds.task.name}-{ds.images_key()}-{seed}.npz"
    if path.exists():
        with np.load(path) as z:
            return z["images"], json.loads(str(z["names"]))
    raws = [read_raw(ds.root / f) for f in ds.files]
    uploads, names = perturbed_views(raws, seed)
    images = np.stack([decode(u) for u in uploads])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, images=images, names=json.dumps(names))
    tmp.replace(path)
    return images, names
