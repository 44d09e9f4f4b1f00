"""Uploaded images stay in memory: Starlette must not spool an accepted upload to a temporary file."""
from __future__ import annotations

import io
import tempfile

import numpy as np
import pytest
from fastapi import FastAPI, UploadFile
from fastapi.testclient import TestClient
from PIL import Image
from starlette.formparsers import MultiPartParser

from services.common.uploads import keep_uploads_in_memory


@pytest.mark.parametrize("factory", ["services.inference.main", "services.explain.api.main"])
def test_apps_raise_the_spool_threshold_to_their_upload_limit(factory):
    import importlib

    module = importlib.import_module(factory)
    app = module.create_app()
    assert MultiPartParser.spool_max_size >= app.state.settings.max_upload_bytes


def test_a_large_upload_is_never_rolled_over_to_disk():
    keep_uploads_in_memory(20 * 1024 * 1024)
    app = FastAPI()
    seen = {}

    @app.post("/up")
    async def up(file: UploadFile):
        spooled = file.file
        seen["rolled"] = bool(getattr(spooled, "_rolled", False))
        seen["is_spooled"] = isinstance(spooled, tempfile.SpooledTemporaryFile)
        return {"n": len(await file.read())}

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 1200), dtype=np.uint8)).save(buf, "PNG")
    assert buf.tell() > 1024 * 1024  # over Starlette's default 1 MB spool threshold
    with TestClient(app) as client:
        r = client.post("/up", files={"file": ("x.png", buf.getvalue(), "image/png")})
    assert r.status_code == 200 and r.json()["n"] == buf.tell()
    assert seen["is_spooled"] and not seen["rolled"]
