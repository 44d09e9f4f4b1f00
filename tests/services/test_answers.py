"""One typed answer (diseaseid.answers): both APIs' OpenAPI schemas name its models, a real ``/predict`` answer
is the core's serializer output for the same image, results of older explain workers are read in today's shape,
and the form field ``role`` (``model`` its deprecated old name)."""
from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager

import pytest

from diseaseid.answers import Conclusion, ExplainJobResult, ExplainResult, PredictResponse, StudyResponse, example
from diseaseid.outcomes import OUTCOMES
from tests.helpers import QuietHandler, http_server
from tests.services.conftest import fixture_bytes


def _name(ref: dict) -> str:
    return ref["$ref"].rsplit("/", 1)[-1]


def _answer(spec: dict, path: str, method: str) -> str:
    return _name(spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"])


@pytest.fixture(scope="module")
def specs() -> dict[str, dict]:
    from services.explain.api.main import app as explain
    from services.inference.main import app as inference

    return {"inference": inference.openapi(), "explain": explain.openapi()}


def test_openapi_names_the_answer_models(specs):
    inference, explain = specs["inference"], specs["explain"]
    assert _answer(inference, "/predict", "post") == "PredictResponse"
    assert _answer(inference, "/predict/study", "post") == "StudyResponse"
    assert _answer(explain, "/explain/{job_id}", "get") == "JobView"
    schemas = {name: spec["components"]["schemas"] for name, spec in specs.items()}
    result = schemas["explain"]["JobView"]["properties"]["result"]["anyOf"]
    assert [_name(r) if "$ref" in r else r for r in result] == ["ExplainResult", {"type": "null"}]
    assert _name(schemas["explain"]["ExplainResult"]["properties"]["prediction"]) == "Conclusion"
    study = schemas["inference"]["StudyResponse"]["properties"]
    assert _name(study["subject"]) == "Conclusion" and _name(study["slices"]["items"]) == "SliceResult"
    # The same model in both services, with its values: the outcomes and the probabilities' type.
    assert schemas["inference"]["Conclusion"] == schemas["explain"]["Conclusion"]
    conclusion = schemas["inference"]["Conclusion"]["properties"]
    assert conclusion["outcome"]["enum"] == list(OUTCOMES) == ["diagnosis", "not_a_brain_mri", "wrong_task"]
    assert conclusion["probabilities"]["additionalProperties"] == {"type": "number"}
    assert _name(conclusion["ood"]) == "Ood"
    ood = schemas["inference"]["Ood"]["properties"]
    assert (ood["flag"]["type"], ood["score"]["type"], ood["reasons"]["items"]) == ("boolean", "number",
                                                                                    {"type": "string"})
    predict = schemas["inference"]["PredictResponse"]
    assert set(predict["required"]) >= {"task", "model", "input", "timing_ms", "label", "probabilities", "ood"}
    explained = schemas["explain"]["ExplainResult"]["properties"]
    assert explained["outcome"]["enum"] == list(OUTCOMES)
    assert _name(explained["methods"]["additionalProperties"]) == "MethodResult"


@pytest.mark.parametrize("app, path", [("inference", "/predict"), ("inference", "/predict/study"),
                                       ("explain", "/explain")])
def test_the_role_field_and_its_deprecated_old_name_are_documented(specs, app, path):
    spec = specs[app]
    body = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    fields = spec["components"]["schemas"][_name(body)]["properties"]
    assert "deprecated" not in fields["role"] and fields["model"]["deprecated"] is True
    assert "old name of `role`" in fields["model"]["description"]


def _without_floats(conclusion: dict) -> dict:
    return {**conclusion, "probabilities": list(conclusion["probabilities"]), "ood": {**conclusion["ood"], "score": 0}}


def test_a_real_answer_is_the_core_serializer_output(inference_client, shipped):
    """``POST /predict`` over loopback HTTP: the body validates as PredictResponse, has exactly its fields, and
    its prediction is ``Prediction.to_dict()`` of the core's predictor on the same decoded image."""
    from services.common.images import decode_image_bytes
    from services.common.settings import ServiceSettings

    data = fixture_bytes("tumor", "glioma")
    r = inference_client.post("/predict", files={"file": ("g.jpg", data, "image/jpeg")},
                              data={"task": "tumor", "role": "student"})
    assert r.status_code == 200, r.text
    body = r.json()
    answer = PredictResponse.model_validate(body)
    assert set(body) == set(PredictResponse.model_fields) and answer.model.role == "student"
    served = {k: body[k] for k in Conclusion.model_fields}
    image = decode_image_bytes(data, ServiceSettings()).array
    expected = shipped("tumor", "student").predict(image[None])[0].to_dict()
    # The floats (probabilities, OOD score) come from the same graph in another process: equal to 1e-5.
    assert served["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)
    assert served["ood"]["score"] == pytest.approx(expected["ood"]["score"], abs=1e-4)
    assert _without_floats(served) == _without_floats(expected)


def test_role_is_read_and_model_still_works(inference_client):
    data = fixture_bytes("tumor", "meningioma")

    def post(form):
        return inference_client.post("/predict", files={"file": ("m.jpg", data, "image/jpeg")},
                                     data={"task": "tumor", **form})

    by_role, by_model = post({"role": "teacher"}), post({"model": "teacher"})
    assert by_role.status_code == by_model.status_code == 200
    assert by_role.json()["model"]["role"] == by_model.json()["model"]["role"] == "teacher"
    assert by_role.json()["probabilities"] == by_model.json()["probabilities"]
    assert post({"role": "teacher", "model": "teacher"}).status_code == 200
    both = post({"role": "student", "model": "teacher"})
    assert both.status_code == 400 and both.json()["error"]["code"] == "malformed_request"
    assert "'role'" in both.json()["error"]["message"]
    unknown = post({"role": "vgg16"})
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_model"


def _old_worker_result(prediction) -> dict:
    """What an explain worker returned before the one answer shape: the prediction flat."""
    return {"outcome": prediction.outcome, "notice": None, "task": "tumor",
            "model": {"role": "student", "name": "tumor/student:x", "version": "abc", "device": "cpu"},
            "prediction": dict(prediction.__dict__),
            "target": {"index": 0, "label": "glioma", "display_en": "Glioma", "display_ru": "Глиома"},
            "methods": {"lrp": {"min": -1.0, "max": 2.0, "render_ms": 3.0}}, "timing_ms": {"total": 9.0}}


def test_an_older_worker_result_is_read_in_todays_shape():
    from diseaseid.serving import Prediction
    from services.explain.api.views import _from_older_worker

    p = Prediction(label_index=0, label="glioma", display_en="Glioma", display_ru="Глиома",
                   probabilities={"glioma": 0.7, "meningioma": 0.1, "notumor": 0.1, "pituitary": 0.1},
                   ood_score=12.5, ood=False, ood_reasons=[], ood_detector="tumor/student:x")
    old = _old_worker_result(p)
    with pytest.raises(ValueError):
        ExplainJobResult.model_validate(old)  # the flat shape is not the answer's
    job = ExplainJobResult.model_validate(_from_older_worker(old))
    assert job.prediction.model_dump(mode="json") == p.to_dict()
    assert job.prediction.ood.model_dump() == {"flag": False, "score": 12.5, "reasons": [],
                                               "detector": "tumor/student:x"}
    new = {**old, "prediction": p.to_dict()}
    assert _from_older_worker(new) is new  # today's results pass unchanged
    result = ExplainResult.with_urls(job, "http://h/explain/j1")
    assert result.panel_url == "http://h/explain/j1/panel.png"
    assert (result.methods["lrp"].png_url, result.methods["lrp"].npy_url, result.methods["lrp"].max) == (
        "http://h/explain/j1/lrp.png", "http://h/explain/j1/lrp.npy", 2.0)


class _OneAnswer(QuietHandler):
    """Answers every POST with the class's ``body`` (200) and every GET with 404."""

    body: dict = {}

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.reply(200, self.body)

    def do_GET(self):  # noqa: N802
        self.send_error(404)


def one_answer_server(body: dict) -> AbstractContextManager[str]:
    """A loopback HTTP server that answers every POST with ``body``; yields its URL (a context manager)."""
    return http_server(type("Handler", (_OneAnswer,), {"body": body}))


def flat(body: dict) -> dict:
    """``body`` with its prediction in the flat shape the explain worker used to return."""
    ood = body["ood"]
    return {**{k: v for k, v in body.items() if k != "ood"}, "ood": ood["flag"], "ood_score": ood["score"],
            "ood_reasons": ood["reasons"]}


@pytest.mark.parametrize("off_contract", [False, True])
def test_the_web_page_reads_answers_with_the_shared_models(off_contract):
    from services.web.client import ServicesClient, Upload, UpstreamError

    body = flat(example(PredictResponse)) if off_contract else example(PredictResponse)

    async def predict(url):
        client = ServicesClient(url, url, timeout_s=5)
        try:
            return await client.predict([Upload("a.jpg", b"\xff\xd8\xff")], "tumor")
        finally:
            await client.aclose()

    with one_answer_server(body) as url:
        if off_contract:
            with pytest.raises(UpstreamError) as info:
                asyncio.run(predict(url))
            assert (info.value.status, info.value.code) == (502, "unexpected_answer")
        else:
            assert asyncio.run(predict(url)) == PredictResponse.model_validate(body).model_dump(mode="json")


@pytest.mark.parametrize("off_contract", [False, True])
def test_the_pacs_bridge_reads_answers_with_the_shared_models(off_contract):
    from services.pacs.client import Failed, ServicesClient

    body = example(StudyResponse)
    if off_contract:
        body = {**body, "subject": flat(body["subject"])}
    with one_answer_server(body) as url:
        client = ServicesClient(url, url, timeout_s=5)
        try:
            if off_contract:
                with pytest.raises(Failed, match="unexpected shape"):
                    client.study([b"x"], "dementia", as_dicom=False)
            else:
                answer = client.study([b"x"], "dementia", as_dicom=False)
                assert isinstance(answer, StudyResponse) and answer.aggregation.attention == [0.62, 0.38]
        finally:
            client.close()
