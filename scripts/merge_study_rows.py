"""Replace rows of a whole-study robustness result by those of a partial rerun, recompute its summary, print its
table.

When something changes only some rows (the dementia OOD threshold of 2026-12-06 flags slices only under gamma,
noise, window and padding), rerunning those changes is enough:

    .venv/bin/python -m diseaseid robustness --task dementia --n 0 --studies -1 --only gamma noise window pad \\
        --threads 2 --out runs/robustness-studies-ood
    .venv/bin/python scripts/merge_study_rows.py docs/robustness-studies/dementia.json \\
        runs/robustness-studies-ood/dementia.json --write

The rerun must hold the same subjects, folds, seed and readers (their models and versions) as the full result
(refused otherwise),
and its clean subject answers must equal the full result's (what "changed" counts against); its clean row replaces
the full result's. Rows keep the full result's order; ``reruns`` in the result lists the replaced changes and the
rerun's date. The rows kept in which the full result had flagged some slices are printed: a change of the OOD
check could have moved those too.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from diseaseid.robustness.report import studies_markdown
from diseaseid.robustness.studies import summarize

# Each reader's classifier is refitted by its slice model's card, whichever head is shipped: the rows of two runs
# compare when these agree (``readers`` holds each reader's model and version). The shipped head (``study_head``,
# ``shipped``) is taken from the rerun.
SAME = ("task", "subject_ids", "truth", "folds", "seed", "readers")


def _studies(path: Path) -> tuple[dict, dict]:
    data = json.loads(path.read_text())
    return data, data.get("studies", data)


def merge(full: dict, rerun: dict) -> tuple[dict, list[str]]:
    """``full`` with the rows of ``rerun`` (both whole-study results) in place of its own; the changes replaced."""
    for key in SAME:
        if full.get(key) != rerun.get(key):
            raise ValueError(f"the rerun differs in {key!r}: its rows are not comparable")
    clean = [{name: r["subjects"] for name, r in run["rows"][0]["readers"].items()} for run in (full, rerun)]
    if clean[0] != clean[1]:
        raise ValueError("the rerun's clean subject answers differ from the full result's: rerun every change")
    new = {(r["family"], r["level"]): r for r in rerun["rows"]}
    unknown = set(new) - {(r["family"], r["level"]) for r in full["rows"]}
    if unknown:
        raise ValueError(f"the rerun has changes the full result lacks: {sorted(unknown)}")
    rows = [new.get((r["family"], r["level"]), r) for r in full["rows"]]
    merged = {**full, "rows": rows, "summary": summarize(rows, list(full["readers"])),
              "study_head": rerun.get("study_head"), "shipped": rerun.get("shipped")}
    return merged, [f"{f}:{lv}" for f, lv in list(new)[1:]]


def kept_with_flags(merged: dict, replaced: list[str]) -> dict[str, float]:
    """The rows kept from the full result in which some slice was flagged (the most of any reader): those are
    the rows a change of the OOD check could have moved."""
    out = {}
    for row in merged["rows"][1:]:
        name = f"{row['family']}:{row['level']}"
        flagged = max(r["slices"]["flagged"] for r in row["readers"].values())
        if name not in replaced and flagged > 0:
            out[name] = flagged
    return out


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
    kept = kept_with_flags(merged, replaced)
    if kept:
        print("\nkept rows with flagged slices (slice share, the most of any reader): "
              + ", ".join(f"{k} {v:.2%}" for k, v in kept.items()))
    if args.write:
        out = {**data, "studies": merged} if "studies" in data else merged
        args.full.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
