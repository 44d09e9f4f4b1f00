"""Load a task's data with its leakage-safe split (``splits/<task>.json``)."""
from __future__ import annotations

from pathlib import Path

from diseaseid.data.dataset import ImageFolder
from diseaseid.data.splits import load_or_make_split
from diseaseid.paths import split_path, task_data_dir
from diseaseid.tasks import get_task


def load_task_data(task: str, data: str | Path | None = None, split: str | Path | None = None,
                   per_class: int | None = None, seed: int = 0) -> tuple[ImageFolder, ImageFolder, dict]:
    """(train, val, split). The committed ``splits/<task>.json`` is used only for the default data set; other
    data (``data`` or a ``per_class`` subset) gets a split made in memory, or read/written at ``split``."""
    t = get_task(task)
    ds = ImageFolder.scan(data or task_data_dir(t), t, per_class=per_class, seed=seed)
    path = Path(split) if split else split_path(task)
    if split is None and (per_class is not None or data is not None):
        from diseaseid.data.splits import make_split

        s = make_split(ds, seed=seed)
    else:
        s = load_or_make_split(ds, path, seed=seed)
    return ds.select(s["train"]), ds.select(s["val"]), s
