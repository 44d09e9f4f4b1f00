"""``python -m bench``: every benchmark the issues ask for, in one JSON, one table and a summary of the goals.

The run ends with a summary block: every goal of the run as a number against its target, PASS or FAIL.

Writes bench/results/latest.json and bench/results/latest.txt (with the date, the machine, its load and the
versions of the shipped models measured); ``scripts/bench_table.py`` turns the JSON into the benchmark table
(docs/benchmarks.md). Only a whole run writes them (they are committed, the record of the last full run): a run
with ``--quick`` writes quick.json / quick.txt, one with ``--only`` or ``--part`` partial.json / partial.txt,
both left out of git (:func:`report_name`)."""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import inspect
import io
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

from bench.goals import summary

SUITES = ("models", "runtimes", "training", "explainers", "predict", "explain", "flood", "robustness")
RESULTS = Path(__file__).resolve().parent / "results"


class Tee(io.TextIOBase):
    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self):
        for st in self.streams:
            st.flush()


def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("model name", "Model", "cpu model"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def shipped_versions() -> dict[str, str]:
    """task/role -> the version (weights hash) of each shipped model and study head: what this run measured."""
    from diseaseid.models.checkpoint import read_card
    from diseaseid.paths import weights_dir

    versions = {}
    for card in sorted(weights_dir().glob("*/*.json")):
        if (stem := card.with_suffix(".safetensors")).exists() and card.stem in ("student", "teacher", "mil"):
            versions[f"{card.parent.name}/{card.stem}"] = str(read_card(stem).get("version"))
    return versions


def report_name(quick: bool, only: list[str] | None, parts: list[str] | None) -> str:
    """The report's file name: ``latest`` for a whole run only, so that a smoke run or a run of some suites never
    replaces the committed record of the last full one."""
    if quick:
        return "quick"
    return "partial" if only or parts else "latest"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats: a smoke run in a minute or two")
    ap.add_argument("--only", nargs="*", choices=SUITES, default=None)
    ap.add_argument("--part", nargs="*", default=None, metavar="PART",
                    help="only these parts of the suites that have parts (predict: load, study, busy)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    report = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "quick": args.quick,
              "only": args.only, "parts": args.part, "machine": machine(), "load_average_start": load_average(),
              "models": shipped_versions(), "suites": {}}
    failed = []
    with contextlib.redirect_stdout(Tee(sys.stdout, text)):
        print(f"diseaseid benchmarks - {report['date']} - {report['machine']['platform']}, "
              f"{report['machine']['cpu_count']} CPUs, torch {report['machine']['torch']}, "
              f"GPU: {report['machine']['cuda'] or 'none'}{' (quick)' if args.quick else ''}")
        for name in args.only or SUITES:
            print(f"\n===== {name} =====")
            start = time.time()
            try:
                module = importlib.import_module(f"bench.{name}")
                kwargs = {"parts": tuple(args.part)} if args.part and "parts" in inspect.signature(
                    module.run).parameters else {}
                report["suites"][name] = module.run(quick=args.quick, **kwargs)
            except Exception as exc:  # one broken suite must not hide the others' numbers
                traceback.print_exc()
                report["suites"][name] = {"error": f"{type(exc).__name__}: {exc}"}
                failed.append(name)
            print(f"({name}: {time.time() - start:.0f} s)")
        report["load_average_end"] = load_average()
        report["models_after"] = shipped_versions()
        report["summary"] = summary(report)
        print(f"\n===== summary: the goals of this run (load average {report['load_average_start']} at the "
              f"start, {report['load_average_end']} at the end) =====")
        if report["models_after"] != report["models"]:
            print("WARNING  the shipped models changed during the run: its numbers mix model versions")
        print("\n".join(report["summary"]))
    suffix = report_name(args.quick, args.only, args.part)
    (out / f"{suffix}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out / f"{suffix}.txt").write_text(text.getvalue())
    print(f"\nwrote {out / (suffix + '.json')} and {out / (suffix + '.txt')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
