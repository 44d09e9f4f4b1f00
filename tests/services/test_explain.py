"""The explain service end to end: real redis-server, the API under uvicorn, real worker processes.

One stack serves the module (starting processes is the expensive part). The tests run in file order:
the first needs a stack with no worker yet, the SIGKILL test brings its own victim, and the Redis restart
comes last because it wipes Redis.
"""
from __future__ import annotations

import io
import signal
import time

import numpy as np
import pytest
from rq import Queue, Retry
from rq.job import Job

from services.explain.api.submit import JOB_FUNCTION
from tests.services.conftest import fixture_bytes
from tests.services.explain_stack import TENANT, TTL_S, ExplainStack, wait_for_job

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def stack():
    stack = ExplainStack.start()
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="module")
def client(stack):
    with stack.client() as c:
        yield c


def post(client, image: bytes, task: str = "tumor", **form):
    files = {"file": ("slice.jpg", image, "image/jpeg")}
    return client.post("/explain", files=files, data={"task": task, **form})


def submit(client, image: bytes, task: str = "tumor", **form) -> dict:
    response = post(client, image, task, **form)
    assert response.status_code == 202, response.text
    return response.json()


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
    return body["error"]


def metric(client, series: str) -> float:
    """The value of one Prometheus series, e.g. ``'x_total{kind="a"}'``; 0 when absent."""
    for line in client.get("/metrics").text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return 0.0


def test_readyz_needs_a_live_worker(stack, client):
    assert client.get("/healthz").json() == {"status": "ok"}
    error = assert_error(client.get("/readyz"), 503, "not_ready")
    assert "worker" in error["message"]


@pytest.fixture(scope="module")
def slow_worker(stack):
    """The only worker until the SIGKILL test kills it: it sleeps 1.5 s inside each job."""
    return stack.start_worker(DISEASEID_EXPLAIN_DEBUG_DELAY_S="1.5")


def test_job_timeout_fails_the_job_not_the_worker(stack, client, slow_worker):
    with stack.redis_client() as r:
        job = Queue("explain", connection=r).enqueue(
            JOB_FUNCTION, bytes(224 * 224 * 3), "tumor", "student", ["gradcam"], None,
            job_timeout=1, retry=Retry(max=2), meta={"tenant": TENANT, "task": "tumor", "model": "student"})
    body = wait_for_job(client, job.id)
    assert body["status"] == "failed" and "1 s job timeout" in body["error"]["message"], body
    with stack.redis_client() as r:
        assert Job.fetch(job.id, connection=r).retries_left == 0  # a timeout would only repeat
    assert slow_worker.alive


def test_sigkill_mid_job_is_finished_by_another_worker(stack, client, slow_worker):
    # The kill lands inside the slow worker's 1.5 s sleep: mid-job, deterministically.
    victim = slow_worker
    job_id = submit(client, fixture_bytes("tumor", "glioma", 1), methods="gradcam")["job_id"]
    deadline = time.monotonic() + 30
    while (status := client.get(f"/explain/{job_id}").json()["status"]) == "queued":
        assert time.monotonic() < deadline, "the victim never started the job"
        time.sleep(0.02)
    assert status == "started"
    # While the only worker is busy, the next job waits at the head of the queue.
    waiting = submit(client, fixture_bytes("tumor", "glioma", 3), methods="gradcam")["job_id"]
    view = client.get(f"/explain/{waiting}").json()
    assert view["status"] == "queued" and view["queue_position"] == 0, view
    victim.kill(signal.SIGKILL)
    assert client.get(f"/explain/{job_id}").json()["status"] == "started"

    survivor = stack.ensure_worker()
    body = wait_for_job(client, job_id)
    assert body["status"] == "finished", body
    assert set(body["result"]["methods"]) == {"gradcam"}
    with stack.redis_client() as r:
        job = Job.fetch(job_id, connection=r)
        assert job.worker_name == survivor.name != victim.name
        assert job.retries_left == 1  # one of two retries spent on the abandoned attempt
    assert metric(client, 'diseaseid_explain_job_failures_total{kind="abandoned"}') == 1
    assert wait_for_job(client, waiting)["status"] == "finished"


def test_tumor_student_both_methods(stack, client):
    stack.ensure_worker()
    accepted = submit(client, fixture_bytes("tumor", "glioma"))
    assert accepted["status"] in ("queued", "started", "finished") and not accepted["deduplicated"]
    assert accepted["status_url"].endswith(f"/explain/{accepted['job_id']}")
    body = wait_for_job(client, accepted["job_id"])
    assert body["status"] == "finished", body
    assert body["request"] == {"task": "tumor", "model": "student", "methods": ["gradcam", "lrp"],
                               "target": None, "image_sha256": body["request"]["image_sha256"]}
    result = body["result"]
    prediction = result["prediction"]
    assert set(prediction["probabilities"]) == {"glioma", "meningioma", "notumor", "pituitary"}
    assert abs(sum(prediction["probabilities"].values()) - 1) < 1e-4
    assert result["target"]["index"] == prediction["label_index"]  # default: explain the predicted class
    assert result["model"]["role"] == "student" and result["model"]["device"] == "cpu"
    assert result["timing_ms"]["total"] > 0

    for method in ("gradcam", "lrp"):
        summary = result["methods"][method]
        png = client.get(summary["png_url"])
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert png.content.startswith(PNG_MAGIC)
        npy = client.get(summary["npy_url"])
        assert npy.status_code == 200
        heatmap = np.load(io.BytesIO(npy.content), allow_pickle=False)
        assert heatmap.shape == (224, 224) and heatmap.dtype == np.float32 and np.isfinite(heatmap).all()
        assert heatmap.min() == pytest.approx(summary["min"])
        assert heatmap.max() == pytest.approx(summary["max"])
    assert 0 <= result["methods"]["gradcam"]["min"] <= result["methods"]["gradcam"]["max"] <= 1
    panel = client.get(result["panel_url"])
    assert panel.status_code == 200 and panel.content.startswith(PNG_MAGIC)


def test_dementia_teacher_one_method_named_target(stack, client):
    stack.ensure_worker()
    job_id = submit(client, fixture_bytes("dementia", "MildDemented"), task="dementia", model="teacher",
                    methods="lrp", target="MildDemented")["job_id"]
    body = wait_for_job(client, job_id)
    assert body["status"] == "finished", body
    result = body["result"]
    assert result["model"]["role"] == "teacher"
    assert result["target"]["index"] == 2 and result["target"]["label"] == "MildDemented"
    assert set(result["methods"]) == {"lrp"}
    assert_error(client.get(f"/explain/{job_id}/gradcam.png"), 404, "not_found")
    assert client.get(f"/explain/{job_id}/lrp.png").content.startswith(PNG_MAGIC)


def test_identical_requests_share_one_job(stack, client):
    stack.ensure_worker()
    image = fixture_bytes("tumor", "meningioma")
    first = submit(client, image, methods="gradcam")
    again = submit(client, image, methods="gradcam")
    assert again["job_id"] == first["job_id"] and again["deduplicated"]
    # Any difference in what is asked makes a new job.
    other = submit(client, image, methods="gradcam", target="0")
    assert other["job_id"] != first["job_id"] and not other["deduplicated"]
    wait_for_job(client, first["job_id"])
    wait_for_job(client, other["job_id"])
    finished = submit(client, image, methods="gradcam")
    assert finished["job_id"] == first["job_id"] and finished["status"] == "finished"


def test_results_expire_after_the_ttl(stack, client):
    stack.ensure_worker()
    image = fixture_bytes("tumor", "pituitary")
    first = submit(client, image, methods="gradcam")
    body = wait_for_job(client, first["job_id"])
    png_url = body["result"]["methods"]["gradcam"]["png_url"]
    deadline = time.monotonic() + TTL_S + 10
    while client.get(f"/explain/{first['job_id']}").status_code == 200:
        assert time.monotonic() < deadline, "the job outlived its TTL"
        time.sleep(0.25)
    assert_error(client.get(f"/explain/{first['job_id']}"), 404, "not_found")
    assert_error(client.get(png_url), 404, "not_found")
    again = submit(client, image, methods="gradcam")
    assert again["job_id"] != first["job_id"] and not again["deduplicated"]


def test_poisoned_job_fails_alone(stack, client):
    worker = stack.ensure_worker()
    failures = 'diseaseid_explain_job_failures_total{kind="permanent"}'
    failed_before = metric(client, failures)
    with stack.redis_client() as r:
        # Straight onto the queue, past the API's validation: pixels that are no image.
        poisoned = Queue("explain", connection=r).enqueue(
            JOB_FUNCTION, b"not pixels", "tumor", "student", ["gradcam"], None,
            retry=Retry(max=2), meta={"tenant": TENANT, "task": "tumor", "model": "student", "methods": ["gradcam"]})
    body = wait_for_job(client, poisoned.id)
    assert body["status"] == "failed"
    assert body["error"]["code"] == "job_failed" and "224x224x3" in body["error"]["message"]
    with stack.redis_client() as r:
        assert Job.fetch(poisoned.id, connection=r).retries_left == 0  # bad input is not retried
    # The same worker process carries on with the next job.
    assert worker.alive
    healthy = submit(client, fixture_bytes("tumor", "notumor"), methods="gradcam")
    assert wait_for_job(client, healthy["job_id"])["status"] == "finished"
    with stack.redis_client() as r:
        assert Job.fetch(healthy["job_id"], connection=r).worker_name == worker.name
    assert metric(client, failures) == failed_before + 1


@pytest.mark.parametrize("form, status, code", [
    ({"task": "liver"}, 422, "unknown_task"),
    ({"task": "tumor", "model": "professor"}, 422, "unknown_model"),
    ({"task": "tumor", "methods": "gradcam,shap"}, 422, "unknown_method"),
    ({"task": "tumor", "target": "banana"}, 422, "unknown_target"),
    ({"task": "tumor", "target": "4"}, 422, "unknown_target"),
])
def test_invalid_form_values(client, form, status, code):
    response = client.post("/explain", files={"file": ("a.jpg", fixture_bytes("tumor", "glioma"))}, data=form)
    assert_error(response, status, code)


@pytest.mark.parametrize("content, status, code", [
    (b"", 422, "invalid_image"),
    (b"just some text, not an image", 415, "unsupported_media_type"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 200, 422, "invalid_image"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 400_000, 413, "too_large"),
])
def test_bad_uploads(client, content, status, code):
    assert_error(post(client, content), status, code)


def test_auth_and_unknown_resources(stack, client):
    image = fixture_bytes("tumor", "glioma")
    with stack.client(key=None) as anonymous:
        assert_error(post(anonymous, image), 401, "unauthorized")
        assert_error(anonymous.get("/explain/whatever"), 401, "unauthorized")
    with stack.client(key="wrong-key") as wrong:
        assert_error(post(wrong, image), 401, "unauthorized")
    assert_error(client.post("/explain", data={"task": "tumor"}), 400, "malformed_request")
    assert_error(client.get("/explain/no-such-job"), 404, "not_found")
    assert_error(client.get("/explain/no-such-job/lrp.npy"), 404, "not_found")
    assert_error(client.get("/explain/no-such-job/shap.png"), 404, "not_found")


def test_ready_and_metrics(stack, client):
    stack.ensure_worker()
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["workers"] >= 1
    text = client.get("/metrics").text
    for family in ("diseaseid_explain_redis_up 1.0",
                   'diseaseid_explain_jobs{state="queued"}',
                   "diseaseid_explain_workers_alive",
                   'diseaseid_explain_job_duration_seconds_count{stage="total"}',
                   'diseaseid_explain_requests_total{outcome="deduplicated"}'):
        assert family in text


def test_redis_restart_gives_503_then_recovers(stack, client):
    worker = stack.ensure_worker()
    image = fixture_bytes("tumor", "glioma", 2)
    stack.redis.stop()
    try:
        error = assert_error(post(client, image), 503, "queue_unavailable")
        assert "Redis" in error["message"]
        assert_error(client.get("/explain/some-job"), 503, "queue_unavailable")
        assert_error(client.get("/readyz"), 503, "queue_unavailable")
        assert client.get("/healthz").status_code == 200
        assert "diseaseid_explain_redis_up 0.0" in client.get("/metrics").text
    finally:
        stack.redis.start()
    # The same worker process reconnects and registers again; the API needs no restart.
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, f"not ready after Redis came back:\n{worker.log_text()[-2000:]}"
        time.sleep(0.2)
    assert worker.alive
    assert wait_for_job(client, submit(client, image, methods="gradcam")["job_id"])["status"] == "finished"
