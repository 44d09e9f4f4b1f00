"""Hyper-parameter search with Optuna: TPE sampler (Bergstra et al. 2011) and a median pruner fed by the
per-epoch validation metric. The study lives in Optuna storage, so a search can be resumed, and several
workers on several machines can share one study through an RDB URL."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import optuna

from diseaseid.data.dataset import ImageFolder
from diseaseid.models import count_parameters, create_model
from diseaseid.tasks import get_task
from diseaseid.train.config import TrainConfig
from diseaseid.train.trainer import fit

DEFAULT_WIDTHS = {"convnet1": (16, 36, 45, 54), "convnet2": (22, 34, 48)}


def storage_url(value: str | None, out: Path, study_name: str) -> str | optuna.storages.BaseStorage:
    """None -> a SQLite file in ``out``; ``*.log``/``*.journal`` -> a journal file; anything else is an RDB URL."""
    if value is None:
        out.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(out / f'{study_name}.db').resolve()}"
    if value.endswith((".log", ".journal")):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        Path(value).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(value))
    return value


def suggest_config(trial: optuna.Trial, base: TrainConfig, max_params: int, epochs: tuple[int, int]) -> TrainConfig:
    cfg = replace(
        base,
        lr=trial.suggest_float("lr", 2e-4, 6e-3, log=True),
        weight_decay=trial.suggest_float("weight_decay", 1e-4, 0.2, log=True),
        dropout=trial.suggest_float("dropout", 0.0, 0.5),
        label_smoothing=trial.suggest_float("label_smoothing", 0.0, 0.2),
        epochs=trial.suggest_int("epochs", *epochs),
        batch_size=trial.suggest_categorical("batch_size", [32, 64, 128]),
    )
    if base.teacher:
        cfg = replace(cfg, kd_temperature=trial.suggest_float("kd_temperature", 1.0, 8.0),
                      w_soft=trial.suggest_float("w_soft", 0.0, 0.9))
        cfg = replace(cfg, w_ce=1.0 - cfg.w_soft)
    if base.model in DEFAULT_WIDTHS:
        widths = [trial.suggest_int(f"width{i}", max(8, w // 2), w * 2)
                  for i, w in enumerate(DEFAULT_WIDTHS[base.model])]
        cfg = replace(cfg, widths=widths)
    n = count_parameters(create_model(cfg.model, num_classes=get_task(cfg.task).num_classes, **cfg.model_args()))
    trial.set_user_attr("parameters", n)
    if n > max_params:
        raise optuna.TrialPruned(f"{n} parameters > cap {max_params}")
    return cfg


def run_search(base: TrainConfig, train: ImageFolder, val: ImageFolder, out: str | Path, n_trials: int | None = 20,
               timeout: float | None = None, storage: str | None = None, study_name: str | None = None,
               max_params: int = 1_000_000, epochs: tuple[int, int] = (4, 12), seed: int = 0) -> optuna.Study:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    study_name = study_name or f"{base.task}-{base.model}{'-kd' if base.teacher else ''}"
    storage = storage_url(storage, out, study_name)
    # A worker joining a shared study later gets another sampler seed, so it does not replay the trials that
    # the first worker proposed; workers started at the same moment need distinct --seed values.
    try:
        existing = len(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:
        existing = 0
    study = optuna.create_study(
        study_name=study_name, storage=storage, load_if_exists=True,
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed + existing),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))

    def objective(trial: optuna.Trial) -> float:
        cfg = suggest_config(trial, base, max_params, epochs)

        def report(epoch: int, rep: dict) -> None:
            trial.report(rep.get(cfg.select, rep["macro_f1"]), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        result = fit(cfg, train, val, on_epoch=report, progress=False)
        for k in ("accuracy", "balanced_accuracy", "macro_f1", "subject_balanced_accuracy"):
            if k in result.best:
                trial.set_user_attr(k, result.best[k])
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("seconds", round(result.seconds, 1))
        return result.best.get(cfg.select, result.best["macro_f1"])

    study.optimize(objective, n_trials=n_trials, timeout=timeout, gc_after_trial=True)
    write_outputs(study, out)
    return study


def write_outputs(study: optuna.Study, out: Path) -> None:
    """best.json, trials.csv / trials.md, history and importance plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_trials_table(study, out)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        (out / "best.json").write_text(json.dumps({"study": study.study_name, "value": best.value,
                                                   "params": best.params, "user_attrs": best.user_attrs,
                                                   "trials": len(study.trials), "complete": len(complete)},
                                                  indent=1) + "\n")
        ax = optuna.visualization.matplotlib.plot_optimization_history(study)
        ax.figure.savefig(out / "history.png", dpi=110, bbox_inches="tight")
        plt.close(ax.figure)
    if len(complete) >= 2:
        try:
            ax = optuna.visualization.matplotlib.plot_param_importances(study)
            ax.figure.savefig(out / "importance.png", dpi=110, bbox_inches="tight")
            plt.close(ax.figure)
        except (RuntimeError, ValueError) as exc:  # e.g. all trials share one value
            print(f"parameter importance not computed: {exc}")


def write_trials_table(study: optuna.Study, out: Path) -> None:
    """trials.csv and a markdown trials.md: number, state, value, parameters, user attributes."""
    import csv

    params = sorted({k for t in study.trials for k in t.params})
    attrs = sorted({k for t in study.trials for k in t.user_attrs})
    header = ["number", "state", "value", *params, *attrs]
    rows = []
    for t in study.trials:
        cells = [t.number, t.state.name, t.value, *(t.params.get(k) for k in params),
                 *(t.user_attrs.get(k) for k in attrs)]
        rows.append(["" if v is None else (f"{v:.4g}" if isinstance(v, float) else v) for v in cells])
    with open(out / "trials.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    (out / "trials.md").write_text("\n".join(lines) + "\n")
