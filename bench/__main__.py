"""``python -m bench [--quick] [--only NAME ...]``: every benchmark the issues ask for, one JSON and one table.

Writes bench/results/latest.json and bench/results/latest.txt (with the date and the machine)."""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import io
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

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


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats: a smoke run in a minute or two")
    ap.add_argument("--only", nargs="*", choices=SUITES, default=None)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    report = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "quick": args.quick,
              "machine": machine(), "suites": {}}
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
                report["suites"][name] = module.run(quick=args.quick)
            except Exception as exc:  # one broken suite must not hide the others' numbers
                traceback.print_exc()
                report["suites"][name] = {"error": f"{type(exc).__name__}: {exc}"}
                failed.append(name)
            print(f"({name}: {time.time() - start:.0f} s)")
    suffix = "quick" if args.quick else "latest"
    (out / f"{suffix}.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out / f"{suffix}.txt").write_text(text.getvalue())
    print(f"\nwrote {out / (suffix + '.json')} and {out / (suffix + '.txt')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
