"""Replace rows of a whole-study robustness result by those of a partial rerun, recompute its summary, print its
table.

When something changes only some rows (the dementia OOD threshold of 2026-12-06 flags slices only under gamma,
noise, window and padding), rerunning those changes is enough:

    .venv/bin/python -m diseaseid robustness --task dementia --n 0 --studies -1 --only gamma noise window pad \\
        --threads 2 --out runs/robustness-studies-ood
    .venv/bin/python scripts/merge_study_rows.py docs/robustness-studies/dementia.json \\
        runs/robustness-studies-ood/dementia.json --write

The rerun must hold the same subjects, folds, seed, readers and models as the full result (refused otherwise),
and its clean row must equal the full result's: the rows it replaces are then comparable with the rest. Rows keep
the full result's order; ``reruns`` in the result lists the replaced changes and the rerun's date.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from diseaseid.robustness.report import studies_markdown
from diseaseid.robustness.studies import summarize

SAME = ("task", "subject_ids", "truth", "folds", "seed", "study_head", "readers")


def _studies(path: Path) -> tuple[dict, dict]:
    data = json.loads(path.read_text())
    return data, data.get("studies", data)


def merge(full: dict, rerun: dict) -> tuple[dict, list[str]]:
    """``full`` with the rows of ``rerun`` (both whole-study results) in place of its own; the changes replaced."""
    for key in SAME:
        if full.get(key) != rerun.get(key):
            raise ValueError(f"the rerun differs in {key!r}: its rows are not comparable")
    if full["rows"][0]["readers"] != rerun["rows"][0]["readers"]:
        raise ValueError("the rerun's clean row differs from the full result's: rerun every change")
    new = {(r["family"], r["level"]): r for r in rerun["rows"][1:]}
    unknown = set(new) - {(r["family"], r["level"]) for r in full["rows"]}
    if unknown:
        raise ValueError(f"the rerun has changes the full result lacks: {sorted(unknown)}")
    rows = [new.get((r["family"], r["level"]), r) for r in full["rows"]]
    merged = {**full, "rows": rows, "summary": summarize(rows, list(full["readers"]))}
    return merged, [f"{f}:{lv}" for f, lv in new]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("full", type=Path, help="the whole-study result to update (diseaseid robustness --studies)")
    ap.add_argument("rerun", type=Path, help="a rerun of some of its changes (--only)")
    ap.add_argument("--write", action="store_true", help="write the merged result over FULL")
    args = ap.parse_args()
    data, full = _studies(args.full)
    _, rerun = _studies(args.rerun)
    merged, replaced = merge(full, rerun)
    merged["reruns"] = [*full.get("reruns", []), {"changes": replaced, "from": str(args.rerun),
                                                  "date": dt.datetime.now(dt.UTC).date().isoformat()}]
    print("\n".join(studies_markdown(merged)))
    if args.write:
        out = {**data, "studies": merged} if "studies" in data else merged
        args.full.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
