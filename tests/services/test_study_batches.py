"""A study is one pass per slice through the network it needs, its batches side by side on the inference threads (so
that a study costs well under its slices sent one request each), and the bench compares it with single requests to
that same model.

- ``answer_study`` in batches run by a thread pool answers exactly as one pass does, and each network sees each
  slice once (the head's backbone answers the slices: its pass gives the head its embeddings);
- ``ModelRunner.map`` runs the batches on the inference threads, in order, and inline when called from one of
  them (waiting on the pool from inside it would deadlock);
- over HTTP, a study naming no model is answered by the head's backbone; the bench's study harness compares it
  with single requests to that model and refuses an answer that is not a 200 with a result (the harness once
  timed 32 refusals of ``model=mil`` as the single requests).
"""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bench import predict as bench_predict
from diseaseid.serving import StudyModel, answer_study
from diseaseid.serving.study import CPU_STUDY_BATCH, study_backbone_role, study_batch_size, study_batches
from services.inference.metrics import InferenceMetrics
from services.inference.model_runner import ModelRunner
from services.inference.routers.predict import _predict_study
from services.inference.settings import InferenceSettings
from tests.services.conftest import FIXTURES


class Counting:
    """A runtime that records the batch sizes it ran (and from which threads)."""

    def __init__(self, inner):
        self.inner, self.name, self.batches, self.threads = inner, inner.name, [], set()
        self.lock = threading.Lock()

    def run(self, images, features=True):
        with self.lock:
            self.batches.append(len(images))
            self.threads.add(threading.current_thread().name)
        return self.inner.run(images, features)


def test_study_batches_split_evenly():
    assert [study_batches(32, p) for p in (1, 2, 3, 4, 64)] == [32, 16, 11, 8, 1]
    assert study_batches(0, 2) == 1 and study_batches(5, 0) == 5


def test_study_batch_size_is_small_on_a_cpu_and_whole_elsewhere():
    assert CPU_STUDY_BATCH == 2
    assert [study_batch_size(32, p) for p in (1, 2, 4, 64)] == [2, 2, 2, 1]
    assert study_batch_size(1, 2) == 1 and study_batch_size(0, 2) == 1
    assert [study_batch_size(32, p, "cuda") for p in (1, 2, 3)] == [32, 16, 11]


class Decoded:
    """What ``_predict_study`` reads of a decoded upload."""

    def __init__(self, array):
        self.array = array


def test_concurrent_study_answers_exactly_as_sequential_and_as_single_requests(shipped, fixtures_dir):
    """The server's study path (small batches taken by two threads) against one pass over every slice and
    against each slice's own ``predict``: the same answers to the last bit (scores too: each image's OOD score
    is computed alone, so the BLAS product's batch-dependent rounding cannot reach it)."""
    from diseaseid.data.dataset import ImageFolder
    from diseaseid.tasks import get_task

    if study_backbone_role("dementia") is None:
        pytest.skip("dementia ships no subject-level head")
    backbone = shipped("dementia", study_backbone_role("dementia"))  # the slice model the head reads
    study = StudyModel.from_shipped("dementia", backbone)
    images = ImageFolder.scan(fixtures_dir / "dementia", get_task("dementia")).images
    sequential = answer_study(backbone, images, study)  # one pass, no threads
    runtime = backbone.runtime
    backbone.runtime = Counting(runtime)
    try:
        with ThreadPoolExecutor(2, thread_name_prefix="pool") as pool:
            concurrent, aggregation = _predict_study(backbone, [Decoded(a) for a in images], study, pool.map, 2)
        counted = backbone.runtime
    finally:
        backbone.runtime = runtime
    assert sorted(counted.batches) == [1] + [2] * (len(images) // 2)  # 33 fixture slices: 16 pairs and one
    assert len(counted.threads) == 2
    assert [p.to_dict() for p in concurrent.slices] == [p.to_dict() for p in sequential.slices]
    assert [p.to_dict() for p in concurrent.slices] == [backbone.predict(a[None])[0].to_dict() for a in images]
    assert concurrent.subject.to_dict() == sequential.subject.to_dict()
    np.testing.assert_array_equal(concurrent.attention, sequential.attention)
    assert (concurrent.used, concurrent.excluded) == (sequential.used, sequential.excluded)
    assert aggregation["method"] == sequential.method and len(aggregation["attention"]) == len(images)


def test_batches_side_by_side_answer_as_one_pass(shipped, fixtures_dir):
    from diseaseid.data.dataset import ImageFolder
    from diseaseid.tasks import get_task

    if study_backbone_role("dementia") is None:
        pytest.skip("dementia ships no subject-level head")
    backbone = shipped("dementia", study_backbone_role("dementia"))  # the slice model the head reads
    study = StudyModel.from_shipped("dementia", backbone)
    images = ImageFolder.scan(fixtures_dir / "dementia", get_task("dementia")).images[:10]
    one = answer_study(backbone, images, study)
    runtime, detector_runtime = backbone.runtime, backbone.detector.runtime
    backbone.runtime, backbone.detector.runtime = Counting(runtime), Counting(detector_runtime)
    try:
        with ThreadPoolExecutor(3, thread_name_prefix="pool") as pool:
            split = answer_study(backbone, images, study, batch_size=study_batches(10, 3), map_batches=pool.map)
        counted, counted_detector = backbone.runtime, backbone.detector.runtime
    finally:
        backbone.runtime, backbone.detector.runtime = runtime, detector_runtime
    assert sorted(counted.batches) == [2, 4, 4] and sorted(counted_detector.batches) == [2, 4, 4]  # each slice once
    assert len(counted.threads) >= 2 and all(t.startswith("pool") for t in counted.threads)  # side by side
    assert [p.to_dict() for p in split.slices] == [p.to_dict() for p in one.slices]
    assert split.used == one.used and split.excluded == one.excluded
    np.testing.assert_allclose(list(split.subject.probabilities.values()), list(one.subject.probabilities.values()),
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(split.attention, one.attention, rtol=0, atol=1e-6)


def test_model_runner_map_keeps_order_and_runs_inline_on_its_own_threads():
    settings = InferenceSettings(inference_workers=1)
    runner = ModelRunner(settings, InferenceMetrics())
    try:
        outside = runner.map(lambda x: (x * 2, threading.current_thread().name), [1, 2, 3])
        assert [x for x, _ in outside] == [2, 4, 6] and all(n.startswith("inference") for _, n in outside)

        def nested():  # on the one inference thread: a pool.map here would wait for itself forever
            return runner.map(lambda x: x + 1, [1, 2, 3])

        assert runner.executor.submit(nested).result(timeout=30) == [2, 3, 4]
    finally:
        runner.close()


def test_a_study_naming_no_model_is_answered_by_the_heads_backbone_and_timed_against_it(inference_server,
                                                                                       monkeypatch):
    port = int(inference_server.url.rsplit(":", 1)[1])
    monkeypatch.setattr(bench_predict, "STUDY_SLICES", 4)
    result = bench_predict.study_vs_slices(port, inference_server.proc.pid, rounds=1)
    head = result["model"] != result["slice_model"]
    if head:  # dementia ships a head: its backbone answered the slices, and the singles went to it
        from diseaseid.serving import Predictor

        backbone = Predictor.from_shipped("dementia", study_backbone_role("dementia")).name
        assert result["model"].startswith("dementia/mil:") and result["slice_model"] == backbone
        assert result["networks_per_slice"] == [backbone]
    assert result["compared_with"] == f"4 x POST /predict role={result['slice_model'].split('/')[1].split(':')[0]} " \
                                      f"({result['slice_model']})"
    assert len(result["ratios"]) == 1 and result["ratio"] == pytest.approx(
        result["study_ms_p50"] / result["slices_one_by_one_ms_p50"], rel=0.01)
    assert result["cpu_ratio"] is not None and result["cpu_s_p50"]["study"] > 0
    # the bench's single requests must be answers: a refusal (model=mil is no slice model) stops it
    refused = bench_predict._request_bytes(port, (FIXTURES / "dementia").glob("*/*.jpg").__next__().read_bytes(),
                                           "dementia", "mil")

    async def send():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await bench_predict._sequential(reader, writer, [refused])
        finally:
            writer.close()

    with pytest.raises(RuntimeError, match="HTTP 422"):
        asyncio.run(send())
