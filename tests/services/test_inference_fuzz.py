"""Property-based fuzzing of the upload endpoints: whatever arrives, the answer is never a 5xx.

Hypothesis builds a few hundred requests from valid slices, PNGs of random size and mode, DICOMs, their
mutations (bit flips, truncation), random bytes, odd form values, missing fields and raw multipart bodies.
Every answer must be 2xx or 4xx; a 4xx must carry the JSON error body, a 200 a well-formed prediction.
Deterministic by default; ``DISEASEID_FUZZ_EXAMPLES`` / ``DISEASEID_FUZZ_SEED`` change the run.
"""
from __future__ import annotations

import io
import os

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from PIL import Image

from diseaseid.outcomes import DIAGNOSIS, NOT_A_BRAIN_MRI, WRONG_TASK
from diseaseid.tasks import TASKS
from tests.helpers import make_dicom
from tests.services.conftest import fixture_bytes

EXAMPLES = int(os.environ.get("DISEASEID_FUZZ_EXAMPLES", "300"))
SEED = int(os.environ.get("DISEASEID_FUZZ_SEED", "20261126"))

VALID = [fixture_bytes("tumor", "glioma"), fixture_bytes("dementia", "NonDemented"),
         make_dicom((np.asarray(Image.open(io.BytesIO(fixture_bytes("tumor", "pituitary"))).convert("L"))
                     .astype(np.uint16) * 8), slope=1.5, intercept=-20.0, window=(1000.0, 1500.0))]


@st.composite
def random_png(draw) -> bytes:
    w, h = draw(st.integers(1, 80)), draw(st.integers(1, 80))
    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "I;16", "1", "P", "LA"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    img = img.convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img).astype(np.uint16) * 257)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 8))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


payloads = st.one_of(st.sampled_from(VALID), mutated(), random_png(), st.binary(max_size=2048),
                     st.just(b""), st.just(b"\x89PNG\r\n\x1a\n"), st.just(b"\0" * 128 + b"DICM"))
odd_tasks = st.one_of(st.sampled_from(["", " tumor", "TUMOR", "x" * 300]), st.text(max_size=20))
odd_models = st.one_of(st.sampled_from(["", "Teacher", "vgg16"]), st.text(max_size=12))
ctypes = st.sampled_from(["image/jpeg", "image/png", "application/dicom", "application/octet-stream",
                          "text/plain", ""])
names = st.one_of(st.just("slice.jpg"), st.just("x.dcm"), st.text(max_size=30))
parts = st.tuples(payloads, ctypes, names)


def mostly(draw, good, bad, odds: int = 8):
    """A draw from ``good`` ``odds`` times in ten, else from ``bad``: most requests reach the decoder."""
    return draw(good) if draw(st.integers(0, 9)) < odds else draw(bad)


@st.composite
def requests(draw) -> dict:
    kind = mostly(draw, st.sampled_from(["predict", "study"]), st.just("raw"), odds=9)
    path = "/predict/study" if kind == "study" else "/predict"
    if kind == "raw":
        boundary = draw(st.sampled_from(["b", "xyz", ""]))
        return {"path": draw(st.sampled_from(["/predict", "/predict/study"])),
                "content": draw(st.binary(max_size=512)),
                "headers": {"content-type": f"multipart/form-data; boundary={boundary}"}}
    form = {}
    task = mostly(draw, st.sampled_from(sorted(TASKS)), st.one_of(st.none(), odd_tasks))
    if task is not None:
        form["task"] = task
    model = mostly(draw, st.sampled_from([None, "student", "teacher"]), odd_models)
    if model is not None:
        form["model"] = model
    if kind == "predict":
        n = mostly(draw, st.just(1), st.sampled_from([0, 2]), odds=9)
    else:
        n = mostly(draw, st.integers(1, 4), st.just(0), odds=9)
    field = "file" if kind == "predict" else "files"
    drawn = draw(st.lists(parts, min_size=n, max_size=n))
    files = [(field, (name, data, ctype)) for data, ctype, name in drawn]
    return {"path": path, "files": files, "data": form}


@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(req=requests())
def test_no_request_gets_a_5xx(inference_client, req):
    path = req.pop("path")
    r = inference_client.post(path, **req)
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        body = r.json()
        assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"]
    else:
        body = r.json()
        conclusion = body["subject"] if path.endswith("study") else body
        # A diagnosis names a class; an image flagged (not a brain MRI, or another task's kind of slice: junk
        # bytes that happen to decode can land on either side of the two tasks' detectors) gets none.
        if conclusion["outcome"] == DIAGNOSIS:
            assert conclusion["label"] in TASKS[body["task"]].classes
        else:
            assert conclusion["outcome"] in (NOT_A_BRAIN_MRI, WRONG_TASK) and conclusion["label"] is None
            assert conclusion["ood"]["flag"]


def test_server_survived_the_fuzzing(inference_client, inference_server):
    assert inference_server.alive
    assert inference_client.get("/readyz").status_code == 200
    assert "Traceback" not in inference_server.log_text()
