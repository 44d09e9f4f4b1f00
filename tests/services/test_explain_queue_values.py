"""The explain queue by value (so that a mutated key, TTL or state fails a test), against a real Redis: the request key,
the dedup entry (its name, value and TTL), which job states an identical request may join, what the enqueued job carries
(TTLs, timeout, retries, meta), and the result and statistics keys the worker writes."""
from __future__ import annotations

import hashlib
import math
import time

import pytest
from rq.job import Job, JobStatus

from services.explain.api.submit import DEAD_STATES, JOB_FUNCTION, ExplainRequest, submit
from services.explain.redis_store import DURATION_BUCKETS, PREFIX, ExplainStore, bucket_label
from services.explain.settings import ExplainSettings

SHA = "ab" * 32


def request(**changes) -> ExplainRequest:
    fields = dict(pixels=bytes(range(256)) * 588, image_sha256=SHA, task="tumor", role="student",
                  methods=("lrp", "gradcam"), target=None)
    return ExplainRequest(**{**fields, **changes})


def test_request_key_is_the_sha256_of_every_field():
    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    assert request().key == sha(f"|{SHA}|tumor|student|gradcam,lrp|")
    assert request(target=0, tenant="t1").key == sha(f"t1|{SHA}|tumor|student|gradcam,lrp|0")
    assert request(target=2, methods=("gradcam",), role="teacher", task="dementia").key == \
        sha(f"|{SHA}|dementia|teacher|gradcam|2")
    assert request(tenant="a").key != request(tenant="b").key
    assert ExplainStore.dedup_key("k1") == "diseaseid:explain:dedup:k1" and PREFIX == "diseaseid:explain"


@pytest.mark.parametrize("ttl", [1, 45, 3600])
def test_dedup_entry_names_the_job_and_lives_exactly_ttl_s(queue, ttl):
    req = request(target=1, tenant="clinic")
    t0 = time.time()
    job, deduplicated = submit(queue, ExplainSettings(ttl_s=ttl, job_timeout_s=45, retries=3), req)
    assert not deduplicated
    key = ExplainStore.dedup_key(req.key)
    assert queue.connection.get(key) == job.id.encode() and len(job.id) == 32
    pttl = queue.connection.pttl(key)
    assert ttl * 1000 - 2000 < pttl <= ttl * 1000, pttl
    stored = Job.fetch(job.id, connection=queue.connection)
    assert (stored.result_ttl, stored.failure_ttl, stored.timeout) == (ttl, ttl, 45)
    assert stored.retries_left == 3 and stored.retry_intervals == [0]
    assert stored.func_name == JOB_FUNCTION == "services.explain.worker.explain.explain_job"
    # The image rides in the job's own hash (it lives and expires with the job), not among the arguments, which RQ
    # compresses on every save.
    assert stored.args == (None, "tumor", "student", ["lrp", "gradcam"], 1)
    assert queue.connection.hget(stored.key, ExplainStore.PAYLOAD_FIELD) == req.pixels
    assert req.pixels not in queue.connection.hget(stored.key, "data")
    assert stored.description == "explain tumor/student lrp,gradcam"
    meta = dict(stored.meta)
    submitted = meta.pop("submitted_at")
    assert t0 - 1 <= submitted <= time.time() + 1
    assert meta == {"task": "tumor", "model": "student", "methods": ["lrp", "gradcam"], "target": 1,
                    "image_sha256": SHA, "tenant": "clinic"}
    assert queue.job_ids == [job.id] and stored.get_status() == JobStatus.QUEUED


def test_a_job_is_retried_twice_unless_told_otherwise(queue, monkeypatch):
    """Every other test sets the retries, so a default of 0 (a killed worker's job lost) went
    unnoticed. Nothing in the environment: the default setting, and the job it queues, retry twice."""
    for name in ("DISEASEID_EXPLAIN_RETRIES", "DISEASEID_RETRIES", "RETRIES"):
        monkeypatch.delenv(name, raising=False)
    settings = ExplainSettings(_env_file=None)
    assert settings.retries == 2
    job, _ = submit(queue, settings, request())
    stored = Job.fetch(job.id, connection=queue.connection)
    assert stored.retries_left == 2 and stored.retry_intervals == [0]


def test_no_retries_when_the_setting_is_zero(queue):
    job, _ = submit(queue, ExplainSettings(retries=0), request())
    assert Job.fetch(job.id, connection=queue.connection).retries_left is None
    job, _ = submit(queue, ExplainSettings(retries=1), request(target=3))
    assert Job.fetch(job.id, connection=queue.connection).retries_left == 1


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.STARTED, JobStatus.FINISHED, JobStatus.DEFERRED,
                                    JobStatus.SCHEDULED])
def test_an_identical_request_joins_a_live_or_finished_job(queue, status):
    settings = ExplainSettings(ttl_s=60)
    first, _ = submit(queue, settings, request())
    Job.fetch(first.id, connection=queue.connection).set_status(status)
    again, deduplicated = submit(queue, settings, request(methods=("gradcam", "lrp")))  # same methods, other order
    assert deduplicated and again.id == first.id and queue.count == 1
    other, deduplicated = submit(queue, settings, request(tenant="another"))  # never shared across tenants
    assert not deduplicated and other.id != first.id


@pytest.mark.parametrize("status", sorted(DEAD_STATES))
def test_a_dead_job_is_replaced_and_the_entry_repointed(queue, status):
    assert DEAD_STATES == {JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}
    settings = ExplainSettings(ttl_s=60)
    first, _ = submit(queue, settings, request())
    Job.fetch(first.id, connection=queue.connection).set_status(status)
    second, deduplicated = submit(queue, settings, request())
    assert not deduplicated and second.id != first.id
    key = ExplainStore.dedup_key(request().key)
    assert queue.connection.get(key) == second.id.encode() and queue.connection.ttl(key) > 55


def test_an_entry_pointing_to_a_vanished_job_gets_a_new_job(queue):
    settings = ExplainSettings(ttl_s=60)
    first, _ = submit(queue, settings, request())
    Job.fetch(first.id, connection=queue.connection).delete()
    second, deduplicated = submit(queue, settings, request())
    assert not deduplicated and second.id != first.id
    assert queue.connection.get(ExplainStore.dedup_key(request().key)) == second.id.encode()


def test_results_live_exactly_ttl_s_under_their_names(redis):
    redis.flushdb()
    store = ExplainStore(redis, ttl_s=30)
    assert store.ttl_s == 30 and store.redis is redis
    store.put_results("j1", {"lrp.png": b"png", "gradcam.npy": b"npy"})
    assert ExplainStore.result_key("j1", "lrp.png") == "diseaseid:explain:result:j1:lrp.png"
    assert redis.get("diseaseid:explain:result:j1:lrp.png") == b"png"
    assert store.get_result("j1", "gradcam.npy") == b"npy" and store.get_result("j2", "lrp.png") is None
    for name in ("lrp.png", "gradcam.npy"):
        assert 28_000 < redis.pttl(store.result_key("j1", name)) <= 30_000
    assert sorted(k.decode() for k in redis.keys("*")) == ["diseaseid:explain:result:j1:gradcam.npy",
                                                          "diseaseid:explain:result:j1:lrp.png"]


def test_duration_histogram_buckets_by_value(redis):
    redis.flushdb()
    store = ExplainStore(redis, ttl_s=60)
    assert DURATION_BUCKETS == (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, math.inf)
    assert bucket_label(math.inf) == "+Inf" and bucket_label(0.25) == "0.25" and bucket_label(5.0) == "5.0"
    store.record_durations({"total": 0.25, "explain": 100.0})  # exactly on a bucket edge: counted in it
    store.record_durations({"total": 0.05})
    raw = {k.decode(): v.decode() for k, v in redis.hgetall(ExplainStore.STATS_DURATIONS).items()}
    assert ExplainStore.STATS_DURATIONS == "diseaseid:explain:stats:durations"
    assert raw["total|0.05"] == "1" and raw["total|0.25"] == "2" and raw["total|+Inf"] == "2"
    assert "total|0.1" in raw and raw["total|0.1"] == "1"
    assert {k for k in raw if k.startswith("explain|")} == {"explain|+Inf", "explain|sum"}
    durations = store.durations()
    assert durations["total"] == {"0.05": 1.0, "0.1": 1.0, "0.25": 2.0, "0.5": 2.0, "1.0": 2.0, "2.5": 2.0,
                                  "5.0": 2.0, "10.0": 2.0, "30.0": 2.0, "60.0": 2.0, "+Inf": 2.0, "sum": 0.3}
    assert durations["explain"] == {"+Inf": 1.0, "sum": 100.0}
    store.count("failures_transient", 3)
    store.count("failures_transient")
    store.count("jobs")
    assert ExplainStore.STATS_COUNTS == "diseaseid:explain:stats:counts"
    assert store.counts() == {"failures_transient": 4, "jobs": 1}
    assert redis.ttl(ExplainStore.STATS_COUNTS) == -1  # statistics are kept, not expired


def test_a_worker_reads_the_image_from_the_jobs_hash_and_keeps_it_for_a_retry(queue):
    """The API leaves the image out of the job's arguments (RQ recompresses those on every save) and keeps it in the
    job's hash, where a real worker finds it; it expires with the job. A job whose image is gone fails at once."""
    import numpy as np

    from services.explain.sealing import process_sealer
    from services.explain.worker.main import build_worker

    slice_ = np.full((224, 224, 3), 40, np.uint8)
    slice_[60:160, 60:160] = 160
    settings = ExplainSettings(ttl_s=30, job_timeout_s=600, retries=1)
    job, _ = submit(queue, settings, request(pixels=slice_.tobytes()))
    lost, _ = submit(queue, settings, request(target=2))
    queue.connection.hdel(lost.key, ExplainStore.PAYLOAD_FIELD)
    build_worker(queue.connection, settings).work(burst=True)
    done = Job.fetch(job.id, connection=queue.connection)
    assert done.get_status() == JobStatus.FINISHED, done.latest_result().exc_string
    result = done.return_value()
    assert set(result["methods"]) == {"gradcam", "lrp"} and result["timing_ms"]["total"] > 0
    assert ExplainStore(queue.connection, 30, process_sealer()).get_result(job.id, "panel.png").startswith(b"\x89PNG")
    # The worker put the job's stage durations into the histograms (once, after its outcome; not the failed job's).
    total = ExplainStore(queue.connection, 30).durations()["total"]
    assert total["+Inf"] == 1 and total["sum"] == pytest.approx(result["timing_ms"]["total"] / 1000, abs=1e-4)
    assert queue.connection.hget(done.key, ExplainStore.PAYLOAD_FIELD) == slice_.tobytes()
    assert 0 < queue.connection.pttl(done.key) <= 30_000  # with the job, the image expires
    failed = Job.fetch(lost.id, connection=queue.connection)
    assert failed.get_status() == JobStatus.FAILED and failed.retries_left == 0  # permanent: not retried
    assert "image is missing" in failed.meta["error"]


def test_a_heartbeat_is_one_round_trip_and_registers_a_lost_worker_again(queue):
    from rq import Worker

    from services.explain.worker.main import build_worker

    worker = build_worker(queue.connection, ExplainSettings(worker_ttl_s=20))
    worker.register_birth()
    sent = []
    execute = type(queue.connection.pipeline()).execute

    def counting(pipe, *args, **kwargs):
        sent.append(len(pipe.command_stack))
        return execute(pipe, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(queue.connection.pipeline()), "execute", counting)
        worker.heartbeat()
    assert sent == [4]  # HSET last_heartbeat, EXPIRE x2, HEXISTS birth: one trip
    assert 70 < queue.connection.ttl(worker.key) <= 80  # worker_ttl + 60
    queue.connection.delete(worker.key)  # Redis came back empty
    worker.heartbeat()
    assert queue.connection.hexists(worker.key, "birth")
    assert worker.name in {w.name for w in Worker.all(connection=queue.connection)}
