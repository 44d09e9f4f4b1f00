"""The served runtime answers as PyTorch does: exported graphs of the shipped weights, checked on the fixtures.

What is served (``auto`` on a CPU: the exported graph under ONNX Runtime) against the PyTorch model it was
exported from: logits and calibrated probabilities within 1e-4 (or, where PyTorch's float32 logits are further
than that from the float64 result, no further from it than PyTorch's), the same features for the OOD detector
and the subject-level head, the same labels and OOD flags; the graph cache keyed by the weights; a study's slices
in one pass per network."""
from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from diseaseid.cli import main as cli_main
from diseaseid.data.dataset import ImageFolder
from diseaseid.models.checkpoint import file_sha256
from diseaseid.serving import ROLES, Predictor, StudyModel, answer_study, shipped_weights
from diseaseid.serving import export as export_mod
from diseaseid.serving.export import ExportMismatch, cached_graph, export_graph, float64_logits, graph_path
from diseaseid.serving.runtime import CPU_RUNTIME, OnnxRuntime, TorchRuntime, load_runtime, resolve
from diseaseid.serving.study import study_backbone_role
from diseaseid.tasks import TASKS, get_task

pytest.importorskip("onnxruntime")
PAIRS = [(t, r) for t in TASKS for r in ROLES]


@pytest.fixture(scope="module")
def fixtures(fixtures_dir):
    return {task: ImageFolder.scan(fixtures_dir / task, get_task(task)) for task in TASKS}


@pytest.fixture(scope="module")
def served_and_torch():
    """(task, role) -> (the served predictor, the same weights on PyTorch)."""
    return {(t, r): (Predictor.from_shipped(t, r), Predictor.from_shipped(t, r, runtime="torch")) for t, r in PAIRS}


def test_auto_serves_the_benchmarks_winner_on_cpu_and_torch_on_gpu(monkeypatch):
    monkeypatch.delenv("DISEASEID_RUNTIME", raising=False)
    assert resolve(None, "cpu") == (CPU_RUNTIME, False)
    assert resolve("auto", "cuda") == ("torch", False)
    assert resolve("torch", "cpu") == ("torch", True)
    monkeypatch.setenv("DISEASEID_RUNTIME", "torch")
    assert resolve(None, "cpu") == ("torch", True)
    monkeypatch.setenv("DISEASEID_RUNTIME", "tensorflow")
    with pytest.raises(ValueError, match="DISEASEID_RUNTIME"):
        resolve(None, "cpu")


@pytest.mark.parametrize("task,role", PAIRS)
def test_served_runtime_equals_pytorch_on_the_fixtures(task, role, fixtures, served_and_torch):
    served, reference = served_and_torch[(task, role)]
    assert served.runtime.name == CPU_RUNTIME and isinstance(reference.runtime, TorchRuntime)
    images = fixtures[task].images
    feats, logits = served.features_and_logits(images)
    want_feats, want_logits = reference.features_and_logits(images)
    # Within 1e-4 of PyTorch's logits; further only where PyTorch's float32 logits are themselves further than
    # that from the float64 result (the dementia student: a flattened convolutional head summing 7,776 terms that
    # cancel, 2e-3 off in float32), and then the served ones must be no further from it than PyTorch's.
    # The calibrated probabilities follow the same rule.
    got, want = served.predict(images), reference.predict(images)
    probs = np.array([list(p.probabilities.values()) for p in got])
    want_probs = np.array([list(p.probabilities.values()) for p in want])
    if np.abs(logits - want_logits).max() > 1e-4:
        exact = float64_logits(reference.model, images)
        assert np.abs(logits - exact).max() <= np.abs(want_logits - exact).max() + 1e-4
        exact_probs = torch.softmax(torch.from_numpy(exact) / reference.temperature, 1).numpy()
        assert np.abs(probs - exact_probs).max() <= np.abs(want_probs - exact_probs).max() + 1e-4
    else:
        np.testing.assert_allclose(probs, want_probs, rtol=0, atol=1e-4)
    np.testing.assert_allclose(feats, want_feats, rtol=1e-4, atol=1e-4)
    assert np.array_equal(logits.argmax(1), want_logits.argmax(1))
    assert np.array_equal(served.logits(images[:3]).numpy(), logits[:3])
    # what a client gets: labels and OOD flags, with the OOD detector on the same runtime
    assert [p.label for p in got] == [p.label for p in want]
    assert [p.ood for p in got] == [p.ood for p in want]
    np.testing.assert_allclose([p.ood_score for p in got], [p.ood_score for p in want], rtol=1e-3, atol=1e-3)


def test_graph_is_cached_by_the_weights_hash_with_its_sidecar(tmp_path, monkeypatch):
    monkeypatch.setenv("DISEASEID_GRAPHS", str(tmp_path / "graphs"))
    weights = tmp_path / "w" / "student.safetensors"
    weights.parent.mkdir()
    shutil.copy(shipped_weights("tumor", "student"), weights)
    shutil.copy(shipped_weights("tumor", "student").with_suffix(".json"), weights.with_suffix(".json"))
    first = cached_graph(weights)
    info = json.loads(first.path.with_suffix(".json").read_text())
    assert info["weights_sha256"] == file_sha256(weights) and info["weights_sha256"][:16] in first.path.name
    assert info["graph_sha256"] == file_sha256(first.path)
    assert info["max_abs_diff_vs_torch"]["within_tolerance"] is True
    stamp = first.path.stat().st_mtime_ns
    assert cached_graph(weights).path == first.path and first.path.stat().st_mtime_ns == stamp  # read, not redone
    # a damaged graph no longer matches its sidecar's hash: exported again
    first.path.write_bytes(first.path.read_bytes()[:-10] + b"0" * 10)
    again = cached_graph(weights)
    assert again.path == first.path and file_sha256(again.path) == info["graph_sha256"]
    # other weights (one value changed, as a retrained model would): another file, another graph
    from safetensors.torch import load_file, save_file

    state = load_file(str(weights))
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[name] = state[name] * 1.5
    save_file(state, str(weights), metadata={"arch": info["arch"]})
    assert graph_path(weights) != first.path
    retrained = cached_graph(weights)
    assert retrained.path != first.path and retrained.info["weights_sha256"] == file_sha256(weights)
    # the same weights built another way by their card (an input filter added by hand): another graph
    card_path = weights.with_suffix(".json")
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "arch_args": {**card.get("arch_args", {}), "input_smooth": 0.5}}))
    assert graph_path(weights) != retrained.path


def test_an_export_that_differs_from_pytorch_is_refused(tmp_path, monkeypatch):
    # a planted bug: the graph normalises with another mean than pre-processing does
    monkeypatch.setattr(export_mod, "IMAGENET_MEAN", (0.5, 0.5, 0.5))
    out = tmp_path / "g.onnx"
    with pytest.raises(ExportMismatch, match="differ from PyTorch"):
        export_graph(shipped_weights("tumor", "student"), out)
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing half-written stays


def test_auto_falls_back_to_pytorch_but_a_named_runtime_raises(tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no graph today")

    monkeypatch.setattr("diseaseid.serving.runtime.graph_runtime", broken)
    model = torch.nn.Linear(1, 1)
    with caplog.at_level(logging.ERROR, logger="diseaseid.serving.runtime"):
        runtime = load_runtime("auto", shipped_weights("tumor", "student"), model)
    assert isinstance(runtime, TorchRuntime) and "no graph today" in caplog.text
    with pytest.raises(RuntimeError, match="no graph today"):
        load_runtime("onnxruntime", shipped_weights("tumor", "student"), model)


def test_openvino_runs_the_same_graph(fixtures, served_and_torch):
    pytest.importorskip("openvino", reason="openvino not installed: pip install openvino")
    served, reference = served_and_torch[("tumor", "student")]
    ov = load_runtime("openvino", shipped_weights("tumor", "student"), reference.model)
    images = fixtures["tumor"].images
    feats, logits = ov.run(images)
    want_feats, want_logits = reference.features_and_logits(images)
    np.testing.assert_allclose(logits, want_logits, rtol=0, atol=1e-4)
    np.testing.assert_allclose(feats, want_feats, rtol=1e-4, atol=1e-4)


class Counting:
    """A runtime wrapper that records the batch size of every pass."""

    def __init__(self, runtime):
        self.inner, self.name, self.batches = runtime, runtime.name, []

    def run(self, images, features=True):
        self.batches.append(len(images))
        return self.inner.run(images, features)

    def describe(self):
        return self.inner.describe()


def test_a_study_is_one_pass_per_network_and_answers_as_two_did(fixtures, served_and_torch):
    """The head's slice model answers and its pass gives the head its embeddings: it and the detector run once
    each over all slices (they used to run in chunks of 16, and the slice model a second time for the head)."""
    teacher = served_and_torch[("dementia", study_backbone_role("dementia") or "teacher")][0]
    study = StudyModel.from_shipped("dementia", teacher)
    if study is None:
        pytest.skip("dementia ships no subject-level head")
    stack = np.concatenate([fixtures["dementia"].images] * 2)[:40]
    expected = answer_study(teacher, stack, study)  # reference values before counting
    want_head = study.predict(stack[expected.used])
    teacher.runtime = counted = Counting(teacher.runtime)
    detector = teacher.detector
    detector.runtime = counted_detector = Counting(detector.runtime)
    try:
        answer = answer_study(teacher, stack, study)
    finally:
        teacher.runtime, detector.runtime = counted.inner, counted_detector.inner
    assert counted.batches == [len(stack)] and counted_detector.batches == [len(stack)]
    assert [p.label for p in answer.slices] == [p.label for p in expected.slices]
    np.testing.assert_allclose(list(answer.subject.probabilities.values()), want_head.probabilities, atol=1e-6)
    np.testing.assert_allclose(answer.attention[answer.used], want_head.attention, atol=1e-6)


def test_evaluate_gives_the_same_labels_with_each_runtime(fixtures_dir, tmp_path, capsys):
    reports = {}
    for runtime in ("torch", CPU_RUNTIME):
        out = tmp_path / f"{runtime}.json"
        assert cli_main(["evaluate", "--task", "tumor", "--model", "teacher", "--data", str(fixtures_dir / "tumor"),
                         "--runtime", runtime, "--out", str(out)]) == 0
        reports[runtime] = json.loads(out.read_text())
    torch_report, served = reports["torch"], reports[CPU_RUNTIME]
    assert torch_report["runtime"] == "torch" and served["runtime"] == CPU_RUNTIME
    assert len(served["predictions"]) == len(list((fixtures_dir / "tumor").glob("*/*.jpg")))
    assert [p["predicted"] for p in served["predictions"]] == [p["predicted"] for p in torch_report["predictions"]]
    assert served["accuracy"] == torch_report["accuracy"]


def test_onnx_runtime_uses_the_process_thread_budget():
    threads = torch.get_num_threads()
    graph = cached_graph(shipped_weights("tumor", "student"))
    runtime = OnnxRuntime(graph.path, graph_sha256=graph.sha256)
    assert runtime.describe() == {"runtime": "onnxruntime", "providers": ["CPUExecutionProvider"],
                                  "threads": threads, "graph_sha256": graph.info["graph_sha256"]}
