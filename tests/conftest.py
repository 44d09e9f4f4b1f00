"""Project-wide test settings: keep torch on few threads (CI has 2 cores) and expose data locations."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.shipped import shipped_predictor

torch.set_num_threads(int(os.environ.get("DISEASEID_TEST_THREADS", "1")))

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Decoded-image caches of test runs go to a temporary folder, not the working tree."""
    os.environ["DISEASEID_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    # Exported graphs are keyed by the weights' hash (diseaseid.serving.export): safe to keep between runs, and
    # exporting the four shipped models again costs each run 10-15 s.
    os.environ.setdefault("DISEASEID_GRAPHS", str(REPO / ".cache" / "graphs"))
    yield


@pytest.fixture(scope="session")
def shipped():
    """``shipped(task, role="student")``: the session's one copy of each shipped predictor."""
    return shipped_predictor
