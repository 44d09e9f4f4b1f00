"""``diseaseid search``: an Optuna study over a student's (or teacher's) training recipe."""
from __future__ import annotations

import json
from pathlib import Path

from diseaseid.cli.common import set_threads
from diseaseid.tasks import TASKS


def register(sub) -> None:
    from diseaseid.models import list_models

    p = sub.add_parser("search", help="Optuna search (TPE + median pruning) over a training recipe")
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--model", default="convnet1", choices=list_models())
    p.add_argument("--teacher", default=None, help="search distillation from these teacher weights")
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--timeout", type=float, default=None, help="wall-time budget in seconds")
    p.add_argument("--storage", default=None,
                   help="Optuna storage: default a SQLite file in --out; a *.log path = journal file; "
                        "or an RDB URL (postgresql://...) shared by workers on several machines")
    p.add_argument("--study-name", default=None)
    p.add_argument("--max-params", type=int, default=1_000_000)
    p.add_argument("--epochs", type=lambda s: tuple(int(v) for v in s.split(",")), default=(4, 12),
                   help="min,max epochs searched")
    p.add_argument("--select", default="macro_f1")
    p.add_argument("--balanced", action="store_true")
    p.add_argument("--per-class", type=int, default=None)
    p.add_argument("--data", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="default: runs/search/<task>-<model>")
    p.set_defaults(func=cmd_search)


def cmd_search(args) -> int:
    import optuna

    from diseaseid.train.config import TrainConfig
    from diseaseid.train.data import load_task_data
    from diseaseid.train.search import run_search

    set_threads(args)
    optuna.logging.set_verbosity(optuna.logging.INFO)
    train, val, _ = load_task_data(args.task, args.data, None, args.per_class, args.seed)
    base = TrainConfig(task=args.task, model=args.model, teacher=args.teacher, select=args.select,
                       balanced=args.balanced, seed=args.seed, device=args.device, patience=100)
    out = Path(args.out or f"runs/search/{args.task}-{args.model}{'-kd' if args.teacher else ''}")
    study = run_search(base, train, val, out, args.trials, args.timeout, args.storage, args.study_name,
                       args.max_params, args.epochs, args.seed)
    states = [t.state.name for t in study.trials]
    print(json.dumps({"study": study.study_name, "trials": len(states),
                      "complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"),
                      "best": study.best_trial.params if states.count("COMPLETE") else None,
                      "best_value": study.best_value if states.count("COMPLETE") else None,
                      "out": str(out)}, indent=1))
    return 0
