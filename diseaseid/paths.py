"""Where things live: the shared data root, shipped weights, caches. Each can be overridden by environment."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ROLES = ("student", "teacher")  # the shipped models of each task: weights/<task>/<role>.*


def data_root() -> Path:
    """The shared data root: $DISEASEID_DATA, else ../shared/data beside the checkout."""
    env = os.environ.get("DISEASEID_DATA")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared" / "data"


def task_data_dir(task) -> Path:
    return data_root() / task.data_dir


def split_path(task: str) -> Path:
    """The committed train/validation/test split of ``task``: ``splits/<task>.json``."""
    return REPO_ROOT / "splits" / f"{task}.json"


def weights_dir() -> Path:
    return Path(os.environ.get("DISEASEID_WEIGHTS", REPO_ROOT / "weights"))


def cache_dir() -> Path:
    path = Path(os.environ.get("DISEASEID_CACHE", REPO_ROOT / ".cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def graphs_dir() -> Path:
    """The served models' exported graphs (diseaseid.serving.export): $DISEASEID_GRAPHS, else <cache>/graphs.
    An image built by the Dockerfile ships them in /app/graphs."""
    env = os.environ.get("DISEASEID_GRAPHS")
    return Path(env) if env else cache_dir() / "graphs"


def fixtures_dir() -> Path:
    return REPO_ROOT / "tests" / "fixtures"
