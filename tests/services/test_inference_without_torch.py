"""The inference service on ONNX Runtime never imports torch (its container is built without it,
``Dockerfile.inference``).

A fresh interpreter starts the real app under uvicorn on loopback with ``DISEASEID_RUNTIME=onnxruntime``, waits
for ``/readyz``, sends a tumour slice to ``POST /predict`` (as JPEG, and as DICOM answered with a DICOM SR), a
dementia study to ``POST /predict/study``, reads ``/models``, ``/docs`` and ``/metrics``, and lists what it
imported. No torch; and every package it imported is one the torch-free image installs (``Dockerfile.inference``'s
INFERENCE_PACKAGES and what they require), so the image cannot miss one. The answers must be PyTorch's (the same
weights on the torch runtime, in this process): labels and OOD flags equal, probabilities within 1e-4.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from diseaseid.serving import Predictor, StudyModel, answer_study, shipped_mil, shipped_weights
from diseaseid.serving.export import cached_graph
from diseaseid.serving.study import study_backbone_role
from services.common.images import decode_image_bytes
from services.common.settings import ServiceSettings
from tests.dicom_series import mr_series
from tests.helpers import free_port
from tests.services.conftest import FIXTURES, REPO

pytest.importorskip("onnxruntime")

SERVER = """
import json, os, sys, threading, time
import httpx  # the test's client, not the service's: what it imports (and loads for a request) is not counted
httpx.Client().close()
before = set(sys.modules)
import uvicorn
from services.inference.main import create_app
from services.inference.settings import InferenceSettings

port = int(sys.argv[1])
server = uvicorn.Server(uvicorn.Config(create_app(InferenceSettings()), host="127.0.0.1", port=port,
                                       log_level="warning"))
threading.Thread(target=server.run, daemon=True).start()
base = f"http://127.0.0.1:{port}"
deadline = time.time() + float(os.environ.get("DISEASEID_TEST_READY_S") or 240)
while True:
    try:
        if httpx.get(base + "/readyz", timeout=5).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    if time.time() > deadline:
        raise SystemExit("not ready")
    time.sleep(0.2)
tumour, study, dicom = json.loads(sys.stdin.read())
one = httpx.post(base + "/predict", data={"task": "tumor", "role": "student"},
                 files={"file": ("slice.jpg", open(tumour, "rb").read(), "image/jpeg")}, timeout=120)
many = httpx.post(base + "/predict/study", data={"task": "dementia"}, timeout=300,
                  files=[("files", (p.rsplit("/", 1)[1], open(p, "rb").read(), "image/jpeg")) for p in study])
sr = httpx.post(base + "/predict", data={"task": "tumor", "format": "dicom"}, timeout=120,
                files={"file": ("slice.dcm", open(dicom, "rb").read(), "application/dicom")})
others = {path: httpx.get(base + path, timeout=60).status_code for path in ("/models", "/docs", "/metrics")}
server.should_exit = True
from importlib.metadata import packages_distributions
found = packages_distributions()
new = {m.split(".")[0] for m in set(sys.modules) - before}
print(json.dumps({"heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm", "torchvision")),
                  "distributions": sorted({d for m in new for d in found.get(m, [])}),
                  "predict": [one.status_code, one.json()], "study": [many.status_code, many.json()],
                  "dicom": [sr.status_code, sr.headers.get("content-type")], "others": others}))
"""
# Imported by a package the image installs, inside ``try: ... except ImportError``: absent from the image, harmless.
OPTIONAL = {"tqdm"}  # pydicom.data.download


def image_packages() -> list[str]:
    """``INFERENCE_PACKAGES`` of Dockerfile.inference: what the torch-free image installs by name."""
    text = (REPO / "Dockerfile.inference").read_text()
    found = re.search(r'ARG INFERENCE_PACKAGES="([^"]+)"', text)
    assert found, "Dockerfile.inference names no INFERENCE_PACKAGES"
    return found.group(1).replace("\\\n", " ").split()


def installed_with(names: list[str]) -> set[str]:
    """The distributions ``pip install`` of ``names`` brings (uvicorn with its ``standard`` extra, as pinned),
    from the installed packages' metadata, canonical names."""
    todo = [(n, ("standard",) if n == "uvicorn" else ()) for n in names]
    seen: set[tuple[str, tuple]] = set()
    while todo:
        name, extras = todo.pop()
        if (canonicalize_name(name), extras) in seen:
            continue
        seen.add((canonicalize_name(name), extras))
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (extras or ("",))):
                todo.append((req.name, tuple(sorted(req.extras))))
    return {name for name, _ in seen}


def _probs(answer: dict, classes) -> list[float]:
    return [answer["probabilities"][c] for c in classes]


def test_onnx_serving_never_imports_torch_and_answers_as_pytorch(tmp_path):
    # the graphs must be cached: an export is the one thing on this path that needs torch (this process has it)
    for task, role in (("tumor", "student"), ("tumor", "teacher"), ("dementia", "student"), ("dementia", "teacher")):
        cached_graph(shipped_weights(task, role))
    head = shipped_mil("dementia")
    if head is not None:
        cached_graph(head, head=True)
    tumour = sorted((FIXTURES / "tumor" / "glioma").glob("*.jpg"))[0]
    study = sorted((FIXTURES / "dementia").glob("*/*.jpg"))[:6]
    dicom = tmp_path / "slice.dcm"
    dicom.write_bytes(mr_series([tumour]).files[0])  # the slice as a scanner's MR instance
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DISEASEID_")}
    env = {**clean, "DISEASEID_RUNTIME": "onnxruntime", "DISEASEID_API_KEYS": "", "DISEASEID_TORCH_THREADS": "1",
           "DISEASEID_LOG_LEVEL": "WARNING", "DISEASEID_GRAPHS": os.environ["DISEASEID_GRAPHS"],
           "DISEASEID_CACHE": os.environ["DISEASEID_CACHE"],
           **{k: os.environ[k] for k in ("DISEASEID_TEST_READY_S", "DISEASEID_WEIGHTS") if k in os.environ}}
    out = subprocess.run([sys.executable, "-c", SERVER, str(free_port())], cwd=REPO, env=env, text=True,
                         input=json.dumps([str(tumour), [str(p) for p in study], str(dicom)]), capture_output=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [], result["heavy"][:10]
    assert result["dicom"] == [200, "application/dicom"] and result["others"] == {"/models": 200, "/docs": 200,
                                                                                 "/metrics": 200}
    outside = {canonicalize_name(d) for d in result["distributions"]} - installed_with(image_packages()) - OPTIONAL
    assert outside <= {"diseaseid"}, f"imported, but Dockerfile.inference does not install: {sorted(outside)}"
    status, one = result["predict"]
    assert status == 200, one

    settings = ServiceSettings()
    reference = Predictor.from_shipped("tumor", "student", runtime="torch")
    want = reference.predict(decode_image_bytes(tumour.read_bytes(), settings).array)[0]
    assert one["label"] == want.label and one["ood"]["flag"] == want.ood
    classes = reference.task.classes
    np.testing.assert_allclose(_probs(one, classes), [want.probabilities[c] for c in classes], atol=1e-4)

    status, many = result["study"]
    assert status == 200, many
    role = study_backbone_role("dementia") or "student"
    backbone = Predictor.from_shipped("dementia", role, runtime="torch")
    images = np.stack([decode_image_bytes(p.read_bytes(), settings).array for p in study])
    head_model = StudyModel.from_shipped("dementia", backbone)
    answer = answer_study(backbone, images, head_model)
    # no model named: the slices are answered by the head's backbone, whose one pass gives the head its input
    assert many["slice_model"]["role"] == role
    assert [s["label"] for s in many["slices"]] == [p.label for p in answer.slices]
    assert many["excluded"] == answer.excluded
    classes = backbone.task.classes
    np.testing.assert_allclose(_probs(many["subject"], classes), [answer.subject.probabilities[c] for c in classes],
                               atol=1e-4)
    if answer.attention is not None:
        np.testing.assert_allclose(many["aggregation"]["attention"], answer.attention, atol=1e-4)
