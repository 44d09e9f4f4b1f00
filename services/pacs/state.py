"""What the bridge has done, in one small JSON file under the data directory (``.data/pacs/state.json``).

Why a file and not Redis: the bridge is a thin client of Orthanc and of our HTTP services; Redis belongs to
the explain service (its queue, its sealed results) and the bridge must not reach into it. The state is small
(a sequence number and one line per series) and has one writer, so a file written atomically (a temporary
file, fsync, rename) is enough and survives a crash at any point: the file holds either the old state or the
new one.

What it holds:

* ``orthanc``: the Orthanc instance it belongs to (``/system`` Name and DatabaseVersion) and ``last_seq``: the
  last change of Orthanc's ``/changes`` feed handled. A restart goes on after it, so nothing is handled twice
  and nothing stored meanwhile is missed. A feed whose last change is below ``last_seq`` is a new Orthanc
  database: the bridge then starts again from 0 and relies on the series records below.
* ``series``: per Orthanc series id, its state (``done``, ``failed``, ``skipped``), the instance count it was
  handled with, the number of runs and tries, the reason of a failure, and the SOP Instance UIDs stored. A
  series is handled again only when it has gained instances since.

Its size stays bounded: beyond ``MAX_SERIES`` records the oldest are dropped (their changes lie behind
``last_seq`` anyway).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

MAX_SERIES = 10_000


@dataclass
class SeriesRecord:
    status: str  # "done" | "failed" | "skipped" | "pending" (tried, services unavailable; tried again)
    instances: int = 0
    runs: int = 0  # completed handlings (a series handled twice would show 2)
    tries: int = 0  # tries that met an unavailable service
    task: str | None = None
    reason: str = ""
    outputs: list[str] = field(default_factory=list)  # SOP Instance UIDs we stored for it
    at: float = 0.0


@dataclass
class BridgeState:
    path: Path
    last_seq: int = 0
    orthanc: str = ""
    series: dict[str, SeriesRecord] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> BridgeState:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path)
        series = {k: SeriesRecord(**v) for k, v in raw.get("series", {}).items()}
        return cls(path, int(raw.get("last_seq", 0)), str(raw.get("orthanc", "")), series)

    def save(self) -> None:
        if len(self.series) > MAX_SERIES:
            keep = sorted(self.series.items(), key=lambda kv: kv[1].at)[-MAX_SERIES:]
            self.series = dict(keep)
        data = {"orthanc": self.orthanc, "last_seq": self.last_seq,
                "series": {k: asdict(v) for k, v in self.series.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def record(self, series_id: str, **fields) -> SeriesRecord:
        record = self.series.get(series_id) or SeriesRecord(status="pending")
        for key, value in fields.items():
            setattr(record, key, value)
        record.at = time.time()
        self.series[series_id] = record
        return record
