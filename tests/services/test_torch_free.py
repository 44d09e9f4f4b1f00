"""What must not load torch: the explain API (it decodes, checks and queues; the worker explains) and image
decoding (shared by every service and the web page). A fresh interpreter imports them and lists what came in."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.services.conftest import REPO

TORCH_FREE = ["services.explain.api.main", "services.common.images", "services.common.uploads",
              "services.common.validation", "services.explain.settings", "diseaseid.data.preprocess",
              "diseaseid.paths", "diseaseid.tasks", "diseaseid.answers", "diseaseid.outcomes", "services.bot.views"]
HEAVY = ("torch", "timm", "onnxruntime")


def loaded_after_importing(module: str) -> list[str]:
    code = (f"import importlib, json, sys; importlib.import_module({module!r}); "
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_imports_without_torch(module):
    assert loaded_after_importing(module) == []


def test_the_check_sees_torch_where_it_is_loaded():
    assert "torch" in loaded_after_importing("diseaseid.data.tensors")
