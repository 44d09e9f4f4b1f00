"""``python -m diseaseid <command>``: every command line of the project, one module per group of commands.

Each module has ``register(subparsers)``, which adds its sub-parsers and sets ``func`` (called with the parsed
args) as each one's default. A command is thin: it turns its options into the arguments of a function of the
ML core (``diseaseid.train``, ``diseaseid.ood``, ``diseaseid.explain``, ...), calls it and prints or writes
what it returns; the core never imports this package. Options shared by several commands (which model, how
many threads) are in ``common``. A new group is one module here and one entry in ``COMMAND_GROUPS``.
"""
from __future__ import annotations

import argparse
import sys

from diseaseid.cli import cv, dementia, explain, mil, ood, robustness, search, serving, train
from diseaseid.memory import keep_freed_memory

# In the order they appear in --help: train, evaluate, average, ensemble; search, train-mil, cv, ship-dementia;
# predict, calibrate, export; ood-fit; explain, explain-eval; robustness.
COMMAND_GROUPS = (train, search, mil, cv, dementia, serving, ood, explain, robustness)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diseaseid", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Every command is a batch job over many images (none serves uploads): freed blocks stay on the heap for the
    # next batch instead of going back to the OS after each one (diseaseid.memory).
    keep_freed_memory()
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
