"""/metrics counts prediction calls by endpoint/task/model/status and reports model load times."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from diseaseid.serving.study import study_backbone_role
from diseaseid.tasks import TASKS
from tests.services.conftest import fixture_bytes


def scrape(client) -> dict[tuple[str, tuple], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_calls_by_task_model_and_status(inference_client):
    before = scrape(inference_client)
    jpeg = fixture_bytes("dementia", "MildDemented")
    for _ in range(3):
        r = inference_client.post("/predict", files={"file": ("a.jpg", jpeg, "image/jpeg")},
                        data={"task": "dementia", "model": "teacher"})
        assert r.status_code == 200
    r = inference_client.post("/predict", files={"file": ("a.gif", b"GIF89a", "image/gif")},
                              data={"task": "dementia"})
    assert r.status_code == 415
    study = [("files", (f"{i}.jpg", jpeg, "image/jpeg")) for i in range(2)]
    assert inference_client.post("/predict/study", files=study, data={"task": "dementia"}).status_code == 200
    after = scrape(inference_client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    ok_teacher = dict(endpoint="predict", task="dementia", model="teacher", status="200")
    assert delta("diseaseid_predictions_total", **ok_teacher) == 3
    assert delta("diseaseid_predictions_total", endpoint="predict", task="dementia", model="student",
                 status="415") == 1
    # a study naming no model is answered by the subject-level head's backbone (one pass per slice)
    backbone = study_backbone_role("dementia")
    assert delta("diseaseid_predictions_total", endpoint="predict_study", task="dementia", model=backbone,
                 status="200") == 1
    assert delta("diseaseid_prediction_duration_seconds_count", endpoint="predict", task="dementia",
                 model="teacher") == 3
    study_slices = {"teacher": 0, "student": 0, backbone: 2}
    assert delta("diseaseid_predicted_slices_total", task="dementia", model="teacher") == 3 + study_slices["teacher"]
    assert delta("diseaseid_predicted_slices_total", task="dementia", model="student") == study_slices["student"]
    assert delta("diseaseid_http_requests_total", method="POST", route="/predict", status="200") == 3
    assert delta("diseaseid_http_requests_total", method="POST", route="/predict", status="415") == 1
    assert delta("diseaseid_http_request_duration_seconds_count", method="POST", route="/predict") == 4


def test_metrics_report_model_loading(inference_client):
    samples = scrape(inference_client)
    assert value(samples, "diseaseid_models_loaded") == 2 * len(TASKS)
    for task in TASKS:
        for role in ("student", "teacher"):
            assert value(samples, "diseaseid_model_load_seconds", task=task, model=role) > 0


def test_unknown_paths_share_one_label(inference_client):
    for i in range(3):
        inference_client.get(f"/scan/{i}")
    samples = scrape(inference_client)
    assert value(samples, "diseaseid_http_requests_total", method="GET", route="unmatched", status="404") >= 3
    assert not any("/scan/" in str(labels) for _, labels in samples)
