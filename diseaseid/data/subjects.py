"""Subject ids for slices: from ``subjects.csv`` beside the images, else from the file name."""
from __future__ import annotations

import csv
import re
from pathlib import Path

_OASIS = re.compile(r"(OAS1_\d{4})")
_RANKED = re.compile(r"^(?P<subject>.+)_r(?P<rank>\d+)$")


def subject_from_name(path: str | Path) -> tuple[str | None, int | None]:
    """``OAS1_0001_MR1_...`` -> (``OAS1_0001``, None); ``<subject>_rNN.jpg`` -> (subject, NN); else (None, None)."""
    stem = Path(path).stem
    m = _OASIS.search(stem)
    if m:
        return m.group(1), None
    m = _RANKED.match(stem)
    if m:
        return m.group("subject"), int(m.group("rank"))
    return None, None


def read_subjects_csv(root: str | Path) -> dict[str, tuple[str, int | None]]:
    """Map a file path relative to ``root`` (posix) -> (subject, slice_rank) from ``root/subjects.csv``."""
    table = Path(root) / "subjects.csv"
    if not table.exists():
        return {}
    out = {}
    with open(table, newline="") as f:
        for row in csv.DictReader(f):
            rank = row.get("slice_rank")
            out[row["file"]] = (row["subject"], int(rank) if rank not in (None, "") else None)
    return out
