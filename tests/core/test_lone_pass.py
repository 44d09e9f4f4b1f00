"""A lone pass gets the idle cores: ``diseaseid.serving.runtime``'s lone-pass budget, and the subject head on the
backbone's graph runtime.

Under a lone-pass budget above the thread budget, an ONNX Runtime slice network holds a second session with that
many threads; a pass that starts while no other pass of the process is in flight runs on it, one that starts
beside another keeps the thread budget. Both give the same answers. The inference service sets the budget from
``DISEASEID_LONE_THREADS`` (0: its CPUs, at most 4)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from diseaseid.serving import Predictor, StudyModel, shipped_mil, shipped_weights
from diseaseid.serving import runtime as rt
from diseaseid.serving.export import HEAD_OUTPUTS, cached_graph
from diseaseid.serving.study import study_backbone_role
from services.inference.settings import LONE_THREADS_MAX, InferenceSettings

pytest.importorskip("onnxruntime")


class Recording:
    """A session that records who ran, and holds a pass in flight until told (``gate``)."""

    def __init__(self, session, name: str, log: list, gate: threading.Event | None = None,
                 started: threading.Event | None = None):
        self.session, self.name, self.log, self.gate, self.started = session, name, log, gate, started

    def run(self, outputs, feeds):
        self.log.append(self.name)
        if self.started is not None:
            self.started.set()
        if self.gate is not None:
            assert self.gate.wait(30)
        return self.session.run(outputs, feeds)

    def get_providers(self):
        return self.session.get_providers()


@pytest.fixture
def budgets():
    """Thread budget 1 and a lone-pass budget of 2 for the runtimes made inside the test, restored after."""
    saved = rt._budget, rt._lone_budget
    rt.set_thread_budget(1)
    rt.set_lone_budget(2)
    yield
    rt._budget, rt._lone_budget = saved


@pytest.fixture(scope="module")
def slices(fixtures_dir):
    from diseaseid.data.dataset import ImageFolder
    from diseaseid.tasks import get_task

    return ImageFolder.scan(fixtures_dir / "tumor", get_task("tumor")).images[:4]


def test_lone_budget_gives_a_second_session_only_where_it_adds_threads(budgets):
    graph = cached_graph(shipped_weights("tumor", "student"))
    runtime = rt.OnnxRuntime(graph.path, graph_sha256=graph.sha256)
    assert runtime.threads == 1 and runtime.lone_threads == 2
    assert runtime.lone_session.get_session_options().intra_op_num_threads == 2
    assert runtime.session.get_session_options().intra_op_num_threads == 1
    assert runtime.describe()["lone_threads"] == 2
    # a subject head's graph keeps one session; so does a budget not above the thread budget
    assert rt.OnnxRuntime(graph.path, outputs=("logits",)).lone_session is None
    rt.set_lone_budget(1)
    assert rt.lone_budget() is None and rt.OnnxRuntime(graph.path).lone_session is None
    rt.set_lone_budget(None)
    assert rt.OnnxRuntime(graph.path).lone_session is None


def test_a_lone_pass_runs_on_the_wide_session_and_a_pass_beside_another_on_the_budget(budgets, slices):
    predictor = Predictor.from_shipped("tumor", "student", runtime="onnxruntime")
    runtime = predictor.runtime
    assert runtime.lone_session is not None
    log: list[str] = []
    gate, started = threading.Event(), threading.Event()
    narrow, wide = runtime.session, runtime.lone_session
    runtime.lone_session = Recording(wide, "lone", log, gate, started)
    runtime.session = Recording(narrow, "budget", log)
    try:
        gate.set()  # a pass alone: runs through
        alone_feats, alone_logits = runtime.run(slices[:1])
        assert log == ["lone"]
        gate.clear()
        # a pass held in flight on the wide session; one that starts meanwhile keeps the thread budget
        first = threading.Thread(target=runtime.run, args=(slices[:1],))
        first.start()
        assert started.wait(30)
        assert rt.PASSES.in_flight == 1
        beside_feats, beside_logits = runtime.run(slices[:1])
        gate.set()
        first.join(30)
        assert log == ["lone", "lone", "budget"]
        assert rt.PASSES.in_flight == 0
    finally:
        runtime.session, runtime.lone_session = narrow, wide
    # the same answers either way (float rounding may differ between thread counts on another CPU)
    np.testing.assert_allclose(beside_logits, alone_logits, rtol=0, atol=1e-4)
    np.testing.assert_allclose(beside_feats, alone_feats, rtol=0, atol=1e-4)
    assert beside_logits.argmax(1).tolist() == alone_logits.argmax(1).tolist()
    assert np.allclose(runtime.run(slices)[1], predictor.runtime.session.run(
        runtime.outputs, {runtime.input: slices})[0], atol=1e-4)


def test_a_failing_pass_leaves_the_count(budgets):
    graph = cached_graph(shipped_weights("tumor", "student"))
    runtime = rt.OnnxRuntime(graph.path)
    with pytest.raises(TypeError, match="uint8"):
        runtime.run(np.zeros((1, 224, 224, 3), np.float32))
    with pytest.raises(Exception):  # noqa: B017  (ONNX Runtime's own error type for a wrong shape)
        runtime.run(np.zeros((1, 10, 10, 3), np.uint8))
    assert rt.PASSES.in_flight == 0


def test_the_inference_service_gives_a_lone_request_its_cpus(monkeypatch):
    monkeypatch.delenv("DISEASEID_LONE_THREADS", raising=False)
    cpus = len(__import__("os").sched_getaffinity(0))
    assert InferenceSettings().lone_pass_threads() == min(cpus, LONE_THREADS_MAX)
    monkeypatch.setenv("DISEASEID_LONE_THREADS", "3")
    assert InferenceSettings().lone_pass_threads() == 3
    monkeypatch.setenv("DISEASEID_LONE_THREADS", "-1")
    with pytest.raises(ValueError):
        InferenceSettings()


def test_openvino_serves_the_subject_head_beside_an_openvino_backbone(fixtures_dir):
    pytest.importorskip("openvino", reason="openvino not installed: pip install openvino")
    from diseaseid.data.dataset import ImageFolder
    from diseaseid.tasks import get_task

    images = ImageFolder.scan(fixtures_dir / "dementia", get_task("dementia")).images[:6]
    answers = {}
    for name in ("onnxruntime", "openvino"):
        backbone = Predictor.from_shipped("dementia", study_backbone_role("dementia"), runtime=name)
        study = StudyModel.from_shipped("dementia", backbone)
        assert study.graph and study.head.name == name
        answers[name] = study.predict(images)
    np.testing.assert_allclose(answers["openvino"].probabilities, answers["onnxruntime"].probabilities, atol=1e-5)
    np.testing.assert_allclose(answers["openvino"].attention, answers["onnxruntime"].attention, atol=1e-5)
    assert abs(float(answers["openvino"].attention.sum()) - 1.0) < 1e-5
    # the head's graph under OpenVINO drops an input it does not take, as ONNX Runtime's does
    graph = cached_graph(shipped_mil("dementia"), head=True)
    head = rt.head_runtime("openvino", graph.path, "cpu", graph.sha256, HEAD_OUTPUTS)
    feats = np.zeros((1, 3, _feature_size(head)), np.float32)
    logits, attention = head.run_arrays({"feats": feats, "pos": np.zeros((1, 3), np.float32), "unused": feats})
    assert logits.shape == (1, 4) and attention.shape == (1, 3)


def _feature_size(head) -> int:
    port = next(p for p in head.compiled.inputs if p.get_any_name() == "feats")
    return int(port.get_partial_shape()[2].get_length())


def test_the_inference_app_sets_the_lone_budget_before_its_models_load():
    """A fresh process starts the app's lifespan (models load in the background) and reads the budgets and the
    served tumor student's sessions once it is ready."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = """
import json, time
from fastapi.testclient import TestClient
from diseaseid.serving import runtime as rt
from services.inference.main import create_app
from services.inference.settings import InferenceSettings
app = create_app(InferenceSettings())
with TestClient(app) as client:
    deadline = time.time() + 300
    while client.get("/readyz").status_code != 200 and time.time() < deadline:
        time.sleep(0.2)
    served = app.state.models.pool.get("tumor", "student").runtime.describe()
    print(json.dumps({"threads": rt.thread_budget(), "lone": rt.lone_budget(), "served": served}))
"""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DISEASEID_") or k in (
        "DISEASEID_WEIGHTS", "DISEASEID_CACHE", "DISEASEID_GRAPHS")}
    env = {**clean, "DISEASEID_API_KEYS": "", "DISEASEID_TORCH_THREADS": "1", "DISEASEID_LONE_THREADS": "2",
           "DISEASEID_RUNTIME": "onnxruntime"}
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], env=env,
                         capture_output=True, text=True, timeout=400, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["threads"] == 1 and got["lone"] == 2
    assert got["served"]["threads"] == 1 and got["served"]["lone_threads"] == 2


def test_the_shared_ood_detector_follows_the_thread_budgets(budgets):
    """The process-wide detector (the tumor student, shared by every predictor) is made under the budgets in
    force: one made under other budgets is not handed out."""
    from diseaseid.serving.predictor import shipped_detector

    wide = shipped_detector("tumor", runtime="onnxruntime")
    assert wide.runtime.lone_threads == 2 and wide.runtime.threads == 1
    assert shipped_detector("tumor", runtime="onnxruntime") is wide
    rt.set_lone_budget(None)
    narrow = shipped_detector("tumor", runtime="onnxruntime")
    assert narrow is not wide and narrow.runtime.lone_session is None
