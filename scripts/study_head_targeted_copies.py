"""Tried on 2026-12-06, not shipped (docs/robustness.md, "Whole studies"): the student's study classifier refitted
beside extra copies of every slice under the changes that move whole studies most (gamma, matrix, bias field,
rotation; each copy's level drawn from a continuous range around the benchmark's levels), judged as
``diseaseid robustness --studies -1`` judges the shipped head (every subject, 4 class-stratified folds, each fold's
head refitted without its subjects, the same series draws), on nine of the changes.

    .venv/bin/python scripts/study_head_targeted_copies.py [K]    # K targeted copies embedded (default 6)

About 30 minutes on the 2-core machine (each copy's 5,120 slices ~1 minute, each change ~1.5 minutes); writes
runs/exp_targeted/result.json and prints one line per change: per recipe (3-class subject balanced accuracy,
% of subjects changed, % of slices changed)."""
import json
import sys
import time
from pathlib import Path

import numpy as np

from diseaseid.data.dataset import ImageFolder
from diseaseid.models import load_model
from diseaseid.paths import task_data_dir
from diseaseid.robustness.evaluate import decode
from diseaseid.robustness.perturbations import PERTURBATIONS, bias_field, gamma, matrix, read_raw, rotate
from diseaseid.robustness.studies import _u8, assign_folds, load_studies, series_rngs, subject_answer, subject_scores
from diseaseid.serving.predictor import Predictor, shipped_weights
from diseaseid.tasks import get_task
from diseaseid.train.cv import SCORED
from diseaseid.train.embeddings import (
    PERTURBED_SEEDS,
    cached_model_embeddings,
    cached_perturbed_model_embeddings,
    model_features,
)
from diseaseid.train.subject_heads import LinearHead

OUT = Path("runs/exp_targeted")
OUT.mkdir(parents=True, exist_ok=True)
K = int(sys.argv[1]) if len(sys.argv) > 1 else 6
TARGET_SEEDS = tuple(range(21, 21 + K))
task = "dementia"
t = get_task(task)
ds = ImageFolder.scan(task_data_dir(t), t)
path = shipped_weights(task, "student")
model, card = load_model(path)
model.eval()


def targeted(raw, rng):
    fam = int(rng.integers(4))
    if fam == 0:
        return gamma(float(np.exp(rng.uniform(np.log(0.75), np.log(1.33)))))(raw, rng)
    if fam == 1:
        return matrix(int(rng.integers(144, 201)))(raw, rng)
    if fam == 2:
        return bias_field(float(rng.uniform(0.08, 0.25)))(raw, rng)
    return rotate(float(rng.uniform(2.0, 7.0)))(raw, rng)


raws = None
targ = []
for seed in TARGET_SEEDS:
    f = OUT / f"student-{card['version']}-targeted-{seed}.npy"
    if not f.exists():
        if raws is None:
            raws = [read_raw(ds.root / p) for p in ds.files]
        t0 = time.time()
        rng = np.random.default_rng(seed)
        images = np.stack([decode(targeted(r, rng)) for r in raws])
        np.save(f, model_features(model, images))
        print(f"targeted copy {seed}: {time.time() - t0:.0f} s", flush=True)
    targ.append(np.load(f))
clean = cached_model_embeddings(ds, path)
rand = [cached_perturbed_model_embeddings(ds, path, seed=PERTURBED_SEEDS[i]) for i in range(3)]

studies = load_studies(task, 0, 0)
fold = assign_folds(dict(zip(studies.subjects, studies.labels.tolist())), studies.subjects, 4, 0)
subj_of_file = {f: s for s, fs in zip(studies.subjects, studies.files) for f in fs}
file_fold = np.array([fold[subj_of_file[f]] for f in ds.files])
RECIPES = {"base (3 random)": rand, "3 random + 3 targeted": rand + targ[:3], "3 random + 6 targeted": rand + targ[:6]}
RECIPES = {k: v for k, v in RECIPES.items() if len(v) <= 3 + K}
heads = {}
for name, copies in RECIPES.items():
    for k in range(4):
        train = file_fold != k
        x = np.concatenate([part[train] for part in [clean, *copies]])
        fit = LinearHead(l2=1000.0).fit(x, np.tile(ds.labels[train], len(copies) + 1))
        heads[name, k] = (fit.weight.astype(np.float64), fit.bias.astype(np.float64))
print("heads fitted", flush=True)

predictor = Predictor.from_shipped(task, "student")
T = predictor.temperature
names = ["gamma:0.8", "gamma:1.25", "matrix:160 px", "bias:+-20%", "rotate:5 deg", "pad:32 px", "noise:sigma 8",
         "intensity:x1.15", "noise:sigma 12"]
conds = [(0, None)] + [(i + 1, p) for i, p in enumerate(PERTURBATIONS) if p.name in names]
rows, base_answers = [], {}
for c, pert in conds:
    t0 = time.time()
    answers = {n: ([], []) for n in RECIPES}
    for i, (subject, sraws) in enumerate(zip(studies.subjects, studies.raws)):
        if pert is None:
            uploads = [_u8(r) for r in sraws]
        else:
            rngs = series_rngs(0, c, i, len(sraws), pert.series)
            uploads = [pert.apply(r, rng) for r, rng in zip(sraws, rngs)]
        images = np.stack([decode(u) for u in uploads])
        preds, feats = predictor.predict_with_features(images, keep_features=True)
        flags = np.array([p.ood for p in preds])
        f64 = feats.astype(np.float64)
        for n in RECIPES:
            w, b = heads[n, fold[subject]]
            logits = f64 @ w.T + b
            answers[n][0].append(subject_answer(logits, ~flags, "mil", T))
            answers[n][1].append(logits.argmax(1))
    row = {"change": "clean" if pert is None else pert.name}
    for n in RECIPES:
        subj = np.array(answers[n][0])
        sl = np.concatenate(answers[n][1])
        base = base_answers.get(n)
        sc = subject_scores(studies.labels, subj, None if base is None else base[0], SCORED)
        row[n] = {"bal3": sc["balanced_accuracy_scored"], "changed": sc.get("changed"),
                  "slices_changed": None if base is None else float((sl != base[1]).mean())}
        if base is None:
            base_answers[n] = (subj, sl)
    rows.append(row)
    print(row["change"], {n: (round(100 * row[n]["bal3"], 1), row[n]["changed"] and round(100 * row[n]["changed"], 1),
                              row[n]["slices_changed"] and round(100 * row[n]["slices_changed"], 1))
                          for n in RECIPES}, f"{time.time() - t0:.0f} s", flush=True)
    (OUT / "result.json").write_text(json.dumps(rows, indent=1))
