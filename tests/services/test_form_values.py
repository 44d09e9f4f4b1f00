"""Form values on every endpoint: one validator, never a 5xx; keys are per tenant and never in a URL.

Hypothesis fuzzes every form field of ``/predict``, ``/predict/study`` and ``/explain`` with what broke
them before (``target=²``, ``①``, thousands of digits), other unicode digits and control characters, empty
values and repeated fields. The explain API runs with two keys and no worker: submitting is all it needs.
"""
from __future__ import annotations

import os

import httpx
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from diseaseid.tasks import get_task
from services.common.errors import InvalidFormValue, UnknownTarget
from services.common.validation import form_text
from services.explain.api.routers.jobs import parse_target
from tests.services.conftest import fixture_bytes
from tests.services.explain_stack import ExplainStack

EXAMPLES = int(os.environ.get("DISEASEID_FUZZ_EXAMPLES", "200"))
SEED = int(os.environ.get("DISEASEID_FUZZ_SEED", "20261128"))
KEY_A, KEY_B = "tenant-key-a-0001", "tenant-key-b-0002"
JPEG = fixture_bytes("tumor", "glioma")

# What an int()-based parser chokes on, and its neighbours.
NASTY = ["²", "①", "٣", "𝟚", "1" * 4301, "9" * 10_000, "-1", "+1", "1_000", "0x1", "1e3", "1.0", " 2 ", "",
         " ", "\x00", "tumor\n", "\u202etumor", "TUMOR", "glioma", "gradcam,,lrp", ",", "lrp\tgradcam"]
values = st.one_of(st.sampled_from(NASTY), st.text(max_size=12),
                   st.integers(-10, 10**30).map(str), st.sampled_from(["tumor", "dementia", "student", "teacher",
                                                                       "auto", "mil", "mean", "gradcam", "lrp"]))


@st.composite
def form(draw, fields: tuple[str, ...]) -> dict[str, list[str]]:
    """Each field absent, once, or repeated; ``task`` mostly valid so that later fields get checked."""
    items: dict[str, list[str]] = {}
    for name in fields:
        for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
            if name == "task" and draw(st.integers(0, 3)):
                value = draw(st.sampled_from(["tumor", "dementia"]))
            else:
                value = draw(values)
            items.setdefault(name, []).append(value)
    return items


ENDPOINTS = {
    "/predict": ("file", ("task", "model")),
    "/predict/study": ("files", ("task", "model", "aggregate")),
    "/explain": ("file", ("task", "model", "methods", "target")),
}


@st.composite
def requests(draw) -> tuple[str, dict, list]:
    path = draw(st.sampled_from(sorted(ENDPOINTS)))
    file_field, fields = ENDPOINTS[path]
    n_files = draw(st.sampled_from([1, 1, 1, 0, 2]))
    files = [(file_field, (f"s{i}.jpg", JPEG, "image/jpeg")) for i in range(n_files)]
    return path, draw(form(fields)), files


@pytest.fixture(scope="module")
def explain_stack():
    stack = ExplainStack.start(DISEASEID_API_KEYS=f"{KEY_A},{KEY_B}")
    try:
        yield stack
    finally:
        stack.close()


def check_answer(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        body = r.json()
        assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"]


@pytest.mark.slow
@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(req=requests())
def test_no_form_value_gets_a_5xx(inference_client, explain_stack, req):
    path, data, files = req
    if path == "/explain":
        with explain_stack.client(KEY_A) as client:
            r = client.post(path, data=data, files=files)
    else:
        r = inference_client.post(path, data=data, files=files)
    check_answer(r)


@pytest.mark.slow
def test_servers_logged_no_traceback(inference_server, explain_stack):
    assert "Traceback" not in explain_stack.api.log_text()
    assert "Traceback" not in inference_server.log_text()


# -- the validator itself ---------------------------------------------------------------------------------

def test_form_text():
    assert form_text(None, "x") == "" and form_text("  tumor ", "x") == "tumor"
    for bad in ("tu\x00mor", "a\nb", "x" * 201):
        with pytest.raises(InvalidFormValue):
            form_text(bad, "x")


@pytest.mark.parametrize("value", ["²", "①", "1" * 4301, "\x00", "x" * 1000])
def test_explain_target_is_a_422_not_a_500(value):
    with pytest.raises(UnknownTarget):
        parse_target(get_task("tumor"), value)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["²", "①", "1" * 4301])
def test_explain_target_over_http(explain_stack, target):
    with explain_stack.client(KEY_A) as client:
        r = client.post("/explain", data={"task": "tumor", "target": target},
                        files={"file": ("s.jpg", JPEG, "image/jpeg")})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_target", r.text


@pytest.mark.slow
def test_repeated_fields_are_refused_alike_everywhere(inference_client, explain_stack):
    two_files = [("file", ("a.jpg", JPEG, "image/jpeg"))] * 2
    one_file = two_files[:1]
    with explain_stack.client(KEY_A) as client:
        explain_two = client.post("/explain", data={"task": "tumor"}, files=two_files)
        explain_tasks = client.post("/explain", data={"task": ["tumor", "dementia"]}, files=one_file)
    predict_two = inference_client.post("/predict", data={"task": "tumor"}, files=two_files)
    predict_tasks = inference_client.post("/predict", data={"task": ["tumor", "dementia"]}, files=one_file)
    for r in (explain_two, predict_two, explain_tasks, predict_tasks):
        assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_request", r.text
    assert explain_two.json() == predict_two.json()
    assert "'task'" in explain_tasks.json()["error"]["message"]
    assert explain_tasks.json() == predict_tasks.json()
    # Fields that do repeat still do.
    with explain_stack.client(KEY_A) as client:
        r = client.post("/explain", data={"task": "tumor", "methods": ["gradcam", "lrp"]}, files=one_file)
    assert r.status_code == 202, r.text
    study = inference_client.post("/predict/study", data={"task": "tumor"},
                                  files=[("files", ("a.jpg", JPEG, "image/jpeg"))] * 2)
    assert study.status_code == 200, study.text


# -- tenants and keys -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_identical_requests_share_a_job_per_key_only(explain_stack):
    image = fixture_bytes("tumor", "pituitary", 1)
    files = {"file": ("s.jpg", image, "image/jpeg")}
    with explain_stack.client(KEY_A) as a, explain_stack.client(KEY_B) as b:
        first = a.post("/explain", data={"task": "tumor"}, files=files).json()
        again = a.post("/explain", data={"task": "tumor"}, files=files).json()
        other = b.post("/explain", data={"task": "tumor"}, files=files).json()
        assert again["job_id"] == first["job_id"] and again["deduplicated"]
        assert other["job_id"] != first["job_id"] and not other["deduplicated"]
        # Nor can the other key read the first one's job or its files by id.
        assert a.get(f"/explain/{first['job_id']}").status_code == 200
        for path in ("", "/panel.png", "/gradcam.png", "/lrp.npy"):
            r = b.get(f"/explain/{first['job_id']}{path}")
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, r.text)


@pytest.mark.slow
def test_keys_in_the_query_string_are_refused_and_not_logged(explain_stack, inference_server):
    with httpx.Client(base_url=explain_stack.api.url) as anonymous:
        r = anonymous.get("/explain/some-job", params={"api_key": KEY_A})
    assert r.status_code == 401 and "X-API-Key header" in r.json()["error"]["message"]
    with explain_stack.client(KEY_A) as client:  # also next to a valid header
        assert client.get("/explain/some-job", params={"apikey": KEY_A}).status_code == 401
    r = httpx.post(inference_server.url + "/predict", params={"api_key": "whatever-secret-1"},
                   data={"task": "tumor"}, files={"file": ("s.jpg", JPEG, "image/jpeg")})
    assert r.status_code == 401
    log = explain_stack.api.log_text()
    assert KEY_A not in log and "api_key=***" in log
    assert "whatever-secret-1" not in inference_server.log_text()
