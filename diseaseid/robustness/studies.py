"""Robustness of the answer a whole study gets: one subject's series under one acquisition change, held out.

A dementia answer is meant to come from a whole axial study (``POST /predict/study``): the subject-level head reads
every slice the OOD check lets through. What a scanner changes, it changes for the whole series, so here every
slice of a subject goes through the same perturbation: a draw that describes the acquisition (a rotation's
direction, a shift's, the bias field: ``Perturbation.series``) is shared by the series, noise is drawn per slice.
Each slice is decoded as served and passed through the study's slice model with its OOD check
(``Predictor.predict_with_features``); flagged slices are left out of the subject's answer, as in serving.

The shipped study head is the slice model's own classifier read over the slices (``pooled_head`` of kind
``slices``: the normalised geometric mean of the slices' probabilities), fitted on every subject. So that the
answers are a new patient's, the subjects are split into folds and, for each fold, that classifier is refitted
by its card's recipe without the fold's subjects (:func:`diseaseid.robustness.held_out.held_out_heads`); the
features and OOD verdicts are the shipped model's. "Changed" compares a subject's answer with its answer on the
clean series; a subject whose every slice is flagged gets no diagnosis, which counts as a changed answer and a
miss.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diseaseid.cards import read_card
from diseaseid.robustness.evaluate import decode
from diseaseid.robustness.perturbations import PERTURBATIONS, Perturbation, read_raw

NO_DIAGNOSIS = -1  # a subject whose every slice was flagged as not a brain MRI slice


def series_rngs(seed: int, condition: int, subject: int, n: int, series: bool) -> list[np.random.Generator]:
    """One generator per slice of a subject's series: the same stream for every slice where the perturbation's
    draw describes the acquisition (``series``), else one stream per slice."""
    if series:
        return [np.random.default_rng([seed, condition, subject]) for _ in range(n)]
    return [np.random.default_rng([seed, condition, subject, j]) for j in range(n)]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def subject_answer(logits: np.ndarray, used: np.ndarray, aggregate: str = "mil", temperature: float = 1.0) -> int:
    """One subject's class from its slices' logits (N x C) and which slices count (``used``, bool), or
    :data:`NO_DIAGNOSIS` when none does. ``mil``: a ``slices`` study head, the argmax of the mean of the slices' log
    probabilities (their normalised geometric mean; a temperature does not move it); ``mean``: the argmax of the
    mean of the slices' calibrated probabilities (``softmax(logits / temperature)``), as ``aggregate=mean``
    serves it."""
    if not used.any():
        return NO_DIAGNOSIS
    z = logits[used].astype(np.float64)
    if aggregate == "mil":
        return int(np.argmax(log_softmax(z).mean(axis=0)))
    if aggregate == "mean":
        return int(np.argmax(np.exp(log_softmax(z / temperature)).mean(axis=0)))
    raise ValueError(f"aggregate must be mil or mean, not {aggregate!r}")


def choose_subjects(labels: dict[str, int], n: int, seed: int = 0) -> list[str]:
    """``n`` subjects (all when ``n`` is 0 or more than there are), as equal a share per class as the classes
    allow (a class with fewer subjects gives all it has; the rest is shared among the others), seeded; sorted."""
    subjects = sorted(labels)
    if n <= 0 or n >= len(subjects):
        return subjects
    rng = np.random.default_rng(seed)
    pools = {c: list(rng.permutation([s for s in subjects if labels[s] == c])) for c in sorted(set(labels.values()))}
    chosen: list[str] = []
    while len(chosen) < n:
        open_classes = [c for c, pool in pools.items() if pool]
        share = max(1, (n - len(chosen)) // len(open_classes))
        for c in open_classes:
            take = min(share, len(pools[c]), n - len(chosen))
            chosen += pools[c][:take]
            pools[c] = pools[c][take:]
    return sorted(chosen)


def assign_folds(labels: dict[str, int], subjects: list[str], folds: int, seed: int = 0) -> dict[str, int]:
    """Subject -> fold, class-stratified: each class's subjects dealt round the folds in a seeded order."""
    rng = np.random.default_rng(seed)
    out, k = {}, 0
    for c in sorted({labels[s] for s in subjects}):
        for s in rng.permutation([s for s in subjects if labels[s] == c]):
            out[str(s)] = k % folds
            k += 1
    return out


def check_study_head(study_path: Path, backbone_path: Path) -> None:
    """ValueError unless the study head is the backbone's own slice classifier read over the slices (what the
    held-out refit reproduces): a ``pooled_head`` of kind ``slices`` whose weights are one of the backbone's."""
    from safetensors.numpy import load_file

    card = read_card(study_path)
    kind = card.get("arch_args", {}).get("kind")
    if card.get("arch") != "pooled_head" or kind != "slices":
        raise ValueError(f"study-level robustness refits a slice classifier; {study_path} is a {card.get('arch')} "
                         f"({kind}) head")
    head = load_file(study_path)["linear.weight"]
    if not any(w.shape == head.shape and np.array_equal(w, head) for w in load_file(backbone_path).values()):
        raise ValueError(f"the study head {study_path} is not the slice classifier of {backbone_path}")


@dataclass
class Studies:
    task: str
    subjects: list[str]
    labels: np.ndarray  # per subject
    files: list[list[str]]  # per subject, its slices lowest first
    raws: list[list[np.ndarray]]  # float32 H x W, 0..255


def load_studies(task: str, n_subjects: int, seed: int = 0) -> Studies:
    """``n_subjects`` subjects of the task's data set (class-stratified, seeded; 0: all), every slice raw."""

    from diseaseid.data.dataset import ImageFolder
    from diseaseid.paths import task_data_dir
    from diseaseid.tasks import get_task

    t = get_task(task)
    ds = ImageFolder.scan(task_data_dir(t), t)
    by_subject = ds.subject_slices()
    labels = {s: ds.subject_label(idx) for s, idx in by_subject.items()}
    subjects = choose_subjects(labels, n_subjects, seed)
    files = [[ds.files[i] for i in by_subject[s]] for s in subjects]
    raws = [[read_raw(ds.root / f) for f in fs] for fs in files]
    return Studies(task, subjects, np.array([labels[s] for s in subjects]), files, raws)


@dataclass(frozen=True)
class Reader:
    """One way a study is answered: the slice model ``role`` and how its slices make one answer."""

    role: str
    aggregate: str  # "mil" (the shipped study head: the geometric mean) or "mean" (of calibrated probabilities)

    @property
    def name(self) -> str:
        return f"{self.role} ({'study head' if self.aggregate == 'mil' else 'mean of slices'})"


def series_logits(predictor, weight: np.ndarray, bias: np.ndarray, images: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One subject's series (N x 224 x 224 x 3 uint8, as served) -> (N x C logits of the head ``weight`` /
    ``bias`` on the predictor's features, N OOD flags as served)."""
    predictions, feats = predictor.predict_with_features(images, keep_features=True)
    flags = np.array([p.ood for p in predictions])
    return feats.astype(np.float64) @ weight.T.astype(np.float64) + bias.astype(np.float64), flags


def subject_scores(truth: np.ndarray, answers: np.ndarray, clean: np.ndarray | None,
                   scored: tuple[int, ...] | None = None) -> dict:
    """Balanced accuracy over the classes present (no diagnosis is a miss) and, with ``scored``, over those classes
    only (``balanced_accuracy_scored``: the dementia cards' 3-class figure leaves out the class of 2 subjects);
    share changed, share undiagnosed; the answers themselves."""
    classes = np.unique(truth)
    recall = {int(c): float((answers[truth == c] == c).mean()) for c in classes}
    out = {"balanced_accuracy": float(np.mean(list(recall.values()))), "accuracy": float((answers == truth).mean()),
           "no_diagnosis": float((answers == NO_DIAGNOSIS).mean()), "answers": [int(a) for a in answers]}
    if scored is not None:
        out["balanced_accuracy_scored"] = float(np.mean([recall[c] for c in scored if c in recall]))
    if clean is not None:
        out["changed"] = float((answers != clean).mean())
        out["changed_n"] = int((answers != clean).sum())
    return out


def evaluate_studies(task: str = "dementia", n_subjects: int = 64, folds: int = 4, seed: int = 0,
                     perturbations: tuple[Perturbation, ...] = PERTURBATIONS, compare: bool = True,
                     log=print) -> dict:
    """Every perturbation applied to whole series of ``n_subjects`` subjects (0: all), answered by the shipped study
    head (its slice model, OOD check and classifier refitted without each fold's subjects) and, with ``compare``,
    by the same recipe over the task's other slice model and by the student with ``aggregate=mean`` (each
    refitted the same way). A reader named "(study head)" is the study head's recipe over that slice model; the
    result's ``shipped`` names the one served."""
    from diseaseid.robustness.held_out import held_out_heads_per_group
    from diseaseid.serving.predictor import Predictor, shipped_weights
    from diseaseid.serving.study import shipped_mil
    from diseaseid.train.cv import SCORED

    study_path = shipped_mil(task)
    if study_path is None:
        raise ValueError(f"the {task} task ships no study-level head")
    card = read_card(study_path)
    backbone = Path(card["backbone"]["file"]).stem
    check_study_head(study_path, shipped_weights(task, backbone))
    readers = [Reader(backbone, "mil")]
    if compare:  # the head's recipe over the other slice model, and what aggregate=mean answers
        readers += [Reader(role, "mil") for role in ("teacher", "student") if role != backbone]
        readers.append(Reader("student", "mean"))
    roles = tuple(dict.fromkeys(r.role for r in readers))
    studies = load_studies(task, n_subjects, seed)
    fold = assign_folds(dict(zip(studies.subjects, studies.labels.tolist())), studies.subjects, folds, seed)
    groups = [[f for s, fs in zip(studies.subjects, studies.files) if fold[s] == k for f in fs] for k in range(folds)]
    heads = dict(enumerate(held_out_heads_per_group(task, roles, groups)))
    missing = set(roles) - set(heads[0])
    if missing:
        raise ValueError(f"no frozen-feature head to refit for {sorted(missing)}")
    predictors = {role: Predictor.from_shipped(task, role) for role in roles}
    scored = SCORED if task == "dementia" else None
    rows, clean = [], {}
    for c, pert in enumerate([None, *perturbations]):
        t0 = time.perf_counter()
        answers = {r.name: ([], [], []) for r in readers}
        for i, (subject, raws) in enumerate(zip(studies.subjects, studies.raws)):
            if pert is None:
                uploads = [_u8(r) for r in raws]
            else:
                rngs = series_rngs(seed, c, i, len(raws), pert.series)
                uploads = [pert.apply(r, rng) for r, rng in zip(raws, rngs)]
            images = np.stack([decode(u) for u in uploads])
            by_role = {}  # one forward pass per model, whichever readers share it
            for role in roles:
                head = heads[fold[subject]][role]
                by_role[role] = series_logits(predictors[role], head.weight, head.bias, images)
            for reader in readers:
                logits, flags = by_role[reader.role]
                answer = subject_answer(logits, ~flags, reader.aggregate, predictors[reader.role].temperature)
                for part, value in zip(answers[reader.name], (answer, logits.argmax(axis=1), flags)):
                    part.append(value)
        row = {"family": "clean" if pert is None else pert.family, "level": "none" if pert is None else pert.level,
               "realistic": True if pert is None else pert.realistic, "readers": {}}
        for reader in readers:
            subjects, labels, flags = answers[reader.name]
            subjects, labels, flags = np.array(subjects), np.concatenate(labels), np.concatenate(flags)
            base = clean.get(reader.name)
            out = {"subjects": subject_scores(studies.labels, subjects, None if base is None else base[0], scored),
                   "slices": {"flagged": float(flags.mean())}}
            if base is None:
                clean[reader.name] = (subjects, labels)
            else:
                out["slices"]["changed"] = float((labels != base[1]).mean())
            row["readers"][reader.name] = out
        rows.append(row)
        log(_row_text(task, row, time.perf_counter() - t0))
    result = {"task": task, "subject_ids": studies.subjects, "truth": [int(y) for y in studies.labels],
              "subjects": len(studies.subjects), "slices": int(sum(len(f) for f in studies.files)),
              "folds": folds, "seed": seed, "study_head": {"name": card["arch"], "version": card.get("version")},
              "shipped": readers[0].name,
              "readers": {r.name: {"role": r.role, "aggregate": r.aggregate, "version": predictors[r.role].version,
                                   "model": predictors[r.role].name} for r in readers},
              "class_counts": {predictors[backbone].task.classes[c]: int((studies.labels == c).sum())
                               for c in np.unique(studies.labels)},
              "rows": rows}
    result["summary"] = summarize(rows, [r.name for r in readers])
    return result


def summarize(rows: list[dict], readers: list[str]) -> dict:
    """Per reader, over the realistic rows (``rows[0]`` is the clean one): clean balanced accuracy, the most
    subjects changed and where, and the changes above 10%."""
    summary = {}
    realistic = [r for r in rows[1:] if r["realistic"]]
    for name in readers:
        worst = max(realistic, key=lambda r: r["readers"][name]["subjects"]["changed"])
        clean_scores = rows[0]["readers"][name]["subjects"]
        summary[name] = {
            "clean_balanced_accuracy": clean_scores["balanced_accuracy"],
            "clean_balanced_accuracy_scored": clean_scores.get("balanced_accuracy_scored"),
            "worst_changed": worst["readers"][name]["subjects"]["changed"],
            "worst_changed_at": f"{worst['family']}:{worst['level']}",
            "over_10_percent": [f"{r['family']}:{r['level']}" for r in realistic
                                if r["readers"][name]["subjects"]["changed"] > 0.10]}
    return summary


def _u8(raw: np.ndarray) -> np.ndarray:
    return np.clip(np.round(raw), 0, 255).astype(np.uint8)


def _row_text(task: str, row: dict, seconds: float) -> str:
    parts = []
    for name, r in row["readers"].items():
        s = r["subjects"]
        text = f"{name}: subjects bal {s['balanced_accuracy']:.3f}"
        if "balanced_accuracy_scored" in s:
            text += f" (scored classes {s['balanced_accuracy_scored']:.3f})"
        if "changed" in s:
            text += f" changed {s['changed']:.3f} ({s['changed_n']})"
        text += f" undiagnosed {s['no_diagnosis']:.3f}, slices flagged {r['slices']['flagged']:.3f}"
        if "changed" in r["slices"]:
            text += f" changed {r['slices']['changed']:.3f}"
        parts.append(text)
    return f"{task} study {row['family']}:{row['level']}: " + "; ".join(parts) + f" ({seconds:.0f} s)"
