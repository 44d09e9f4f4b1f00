"""``python -m diseaseid <command>``: each command group is a module with ``register(subparsers)``.

A module's ``register`` adds its sub-parsers and sets ``func`` (called with the parsed args) as each one's
default. A new group is one import and one entry in ``COMMAND_GROUPS``.
"""
from __future__ import annotations

import argparse
import sys

from diseaseid.explain import cli as explain_cli
from diseaseid.robustness import cli as robustness_cli
from diseaseid.serving import cli as serving_cli
from diseaseid.serving import ood_fit
from diseaseid.train import cli as train_cli

# In the order they appear in --help: train, evaluate and the other training commands; predict, calibrate;
# ood-fit; explain, explain-eval; robustness.
COMMAND_GROUPS = (train_cli, serving_cli, ood_fit, explain_cli, robustness_cli)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diseaseid", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
