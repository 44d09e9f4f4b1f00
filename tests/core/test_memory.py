"""The one memory policy (``diseaseid.memory``): a process that explains keeps freed memory, one that decodes
uploads hands it back after each large decode, and where both happen keeping wins. Each case runs in a fresh
interpreter, since the policy is process-wide."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from diseaseid.paths import REPO_ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc is tuned on Linux only")

SCRIPT = """
import json, sys
from diseaseid import memory
steps = sys.argv[1].split(",")
print(json.dumps([getattr(memory, step)() for step in steps] + ["torch" in sys.modules]))
"""


def run(steps: str, **env: str) -> list:
    out = subprocess.run([sys.executable, "-c", SCRIPT, steps], cwd=REPO_ROOT, capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=600, check=True).stdout
    return json.loads(out)


def test_a_decoding_process_trims_and_a_keeping_one_does_not():
    # trimming works on its own; once memory is kept, trimming is a no-op; keeping is applied once
    assert run("release_freed_memory,keep_freed_memory,release_freed_memory,keep_freed_memory") == [
        True, True, False, True, False]


def test_keeping_can_be_turned_off():
    assert run("keep_freed_memory,release_freed_memory", DISEASEID_KEEP_FREED_MEMORY="0") == [False, True, False]


def test_compiling_an_explanation_graph_keeps_freed_memory():
    """The explain worker's path: the first ``compile_graph`` applies the policy (and trimming stops)."""
    script = ("import json, torch; from diseaseid import memory; from diseaseid.explain.graph import compile_graph; "
              "compile_graph(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()); "
              "print(json.dumps([memory._kept, memory.release_freed_memory()]))")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                         env={**os.environ, "DISEASEID_KEEP_FREED_MEMORY": "1"}, timeout=600, check=True).stdout
    assert json.loads(out) == [True, False]


def test_every_command_keeps_freed_memory(tmp_path):
    """A ``python -m diseaseid`` command is a batch job (training, embeddings, fits): the CLI applies the policy
    before the command runs (here ``ood-fit --table``, which only reads the shipped fits)."""
    script = ("import json, sys; from diseaseid import memory; from diseaseid.cli import main; "
              "before = memory._kept; main(['ood-fit', '--table']); "
              "print(json.dumps([before, memory._kept, memory.release_freed_memory()]), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, "DISEASEID_KEEP_FREED_MEMORY": "1"}, timeout=600, check=True)
    assert json.loads(done.stderr.strip().splitlines()[-1]) == [None, True, False]
