"""Per-module mutation scores from mutmut's results (run by `make mutation` after `mutmut run`).

Score = killed / (mutants that were run); "no tests" and "survived" count against it, "timeout" and
"segfault" (a mutant that hangs or crashes the tests) count as killed, "not checked" (not run yet) is left
out and reported. Exit 1 when a module that was run scores below ``--min`` percent."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import Counter, defaultdict

KILLED = {"killed", "timeout", "segfault", "caught by type check"}
NOT_RUN = {"not checked", "skipped"}


def module_of(mutant: str) -> str:
    return re.split(r"\.x(?:_|ǁ)", mutant, maxsplit=1)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--min", type=float, default=85.0)
    ap.add_argument("--mutmut", default="mutmut")
    args = ap.parse_args(argv)
    out = subprocess.run([args.mutmut, "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
    counts: dict[str, Counter] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if not sep:
            continue
        counts[module_of(name)][status] += 1
        if status not in KILLED | NOT_RUN:
            survivors[module_of(name)].append(f"{name} ({status})")
    failed = False
    print(f"{'module':45} {'run':>5} {'killed':>7} {'score':>7}  not run")
    for module in sorted(counts):
        c = counts[module]
        run = sum(v for k, v in c.items() if k not in NOT_RUN)
        killed = sum(v for k, v in c.items() if k in KILLED)
        not_run = sum(v for k, v in c.items() if k in NOT_RUN)
        score = 100.0 * killed / run if run else float("nan")
        print(f"{module:45} {run:5d} {killed:7d} {score:6.1f}%  {not_run}")
        failed |= bool(run) and score < args.min
    for module, names in sorted(survivors.items()):
        print(f"\nsurvivors in {module}:")
        print("\n".join(f"  {n}" for n in names))
    print("\n`mutmut show NAME` prints a mutant's diff.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
