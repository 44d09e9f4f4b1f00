"""Every way a request can be wrong gets its status and the JSON error body; the server never breaks."""
from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.helpers import PATIENT_ID, bomb_png, make_dicom
from tests.services.conftest import fixture_bytes

MB = 1024 * 1024
JPEG = fixture_bytes("tumor", "glioma")


def error_of(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    return body["error"]


def predict(client, data: bytes = JPEG, task: str | None = "tumor", name="x.jpg", ctype="image/jpeg", **form):
    fields = {**({"task": task} if task is not None else {}), **form}
    return client.post("/predict", files={"file": (name, data, ctype)}, data=fields)


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def test_malformed_forms_are_400(inference_client):
    client = inference_client
    assert error_of(client.post("/predict", json={"task": "tumor"}), 400)["code"] == "malformed_request"
    assert "file" in error_of(client.post("/predict", data={"task": "tumor"}), 400)["message"]
    assert "task" in error_of(predict(client, task=None), 400)["message"]
    broken = client.post("/predict", content=b"--xyz\r\nnot a part",
                         headers={"content-type": "multipart/form-data; boundary=xyz"})
    error_of(broken, 400)
    two = client.post("/predict", files=[("file", ("a.jpg", JPEG, "image/jpeg"))] * 2,
                      data={"task": "tumor"})
    assert "files" in error_of(two, 400)["message"].lower()
    assert error_of(client.post("/predict/study", data={"task": "tumor"}), 400)["code"] == "malformed_request"


def test_unknown_task_model_and_route(inference_client):
    assert error_of(predict(inference_client, task="glioma"), 422)["code"] == "unknown_task"
    assert error_of(predict(inference_client, model="vgg16"), 422)["code"] == "unknown_model"
    assert error_of(inference_client.get("/nowhere"), 404)["code"] == "not_found"
    assert error_of(inference_client.get("/predict"), 405)["code"] == "method_not_allowed"


def test_unsupported_types_are_415(inference_client):
    gif = io.BytesIO()
    Image.new("L", (64, 64)).save(gif, "GIF")
    for data in (gif.getvalue(), b"hello, world", b"%PDF-1.4 ..."):
        assert error_of(predict(inference_client, data), 415)["code"] == "unsupported_media_type"


def test_unusable_images_are_422(inference_client):
    cases = {
        "empty": b"",
        "1x1": png(np.zeros((1, 1), np.uint8)),
        "truncated": JPEG[: len(JPEG) // 3],
        "garbage after a PNG signature": b"\x89PNG\r\n\x1a\n" + b"\x00" * 100,
    }
    for name, data in cases.items():
        assert error_of(predict(inference_client, data), 422)["code"] == "invalid_image", name


def test_30k_by_30k_png_bomb_is_refused_before_decoding(inference_client, inference_server):
    bomb = bomb_png(30_000)
    assert len(bomb) < 2 * MB  # the whole point of a bomb
    err = error_of(predict(inference_client, bomb, name="bomb.png", ctype="image/png"), 422)
    assert err["code"] == "image_too_large"
    assert inference_client.get("/healthz").status_code == 200 and inference_server.alive


def test_bad_dicoms_are_422_without_patient_tags(inference_client):
    gray = np.asarray(Image.open(io.BytesIO(JPEG)).convert("L")).astype(np.uint16)
    multi = make_dicom(np.stack([gray, gray, gray]))
    err = error_of(predict(inference_client, multi, name="s.dcm", ctype="application/dicom"), 422)
    assert "multi-frame" in err["message"] and "3 frames" in err["message"]
    report = make_dicom(None, with_pixels=False, sop_class="1.2.840.10008.5.1.4.1.1.88.11")
    err = error_of(predict(inference_client, report, name="sr.dcm"), 422)
    assert "no image" in err["message"] and PATIENT_ID not in err["message"]
    error_of(predict(inference_client, make_dicom(gray)[:1000], name="cut.dcm"), 422)


def test_25_mb_body_is_413_before_it_is_read(inference_client):
    big = b"\xff\xd8\xff" + b"\0" * (25 * MB)
    assert error_of(predict(inference_client, big), 413)["code"] == "too_large"


def test_oversized_chunked_body_is_cut_off_while_streaming(inference_client):
    # No Content-Length: the limit is enforced on the bytes as they arrive.
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"task\"\r\n\r\ntumor\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()

    def body():
        yield head
        for _ in range(25):
            yield b"\0" * MB
        yield f"\r\n--{boundary}--\r\n".encode()

    ctype = f"multipart/form-data; boundary={boundary}"
    r = inference_client.post("/predict", content=body(), headers={"content-type": ctype})
    err = error_of(r, 413)
    assert err["code"] == "too_large" and "request body" in err["message"]


def test_one_file_over_the_per_file_limit_in_a_study_is_413(inference_client):
    big = b"\xff\xd8\xff" + b"\0" * 21 * MB
    files = [("files", ("a.jpg", JPEG, "image/jpeg")), ("files", ("b.jpg", big, "image/jpeg"))]
    err = error_of(inference_client.post("/predict/study", files=files, data={"task": "dementia"}), 413)
    assert err["code"] == "too_large" and "the file is over" in err["message"]


def test_study_errors_name_the_file_and_cap_the_count(inference_client):
    files = [("files", ("a.jpg", JPEG, "image/jpeg")), ("files", ("b.gif", b"GIF89a", "image/gif"))]
    err = error_of(inference_client.post("/predict/study", files=files, data={"task": "dementia"}), 415)
    assert err["message"].startswith("file 1:")
    many = [("files", (f"{i}.jpg", JPEG, "image/jpeg")) for i in range(65)]
    err = error_of(inference_client.post("/predict/study", files=many, data={"task": "dementia"}), 422)
    assert err["code"] == "too_many_files"


@pytest.mark.parametrize("path", ["/predict", "/predict/study"])
def test_server_is_still_healthy_after_the_errors(inference_client, path):
    assert inference_client.get("/readyz").status_code == 200
    files = [("files" if path.endswith("study") else "file", ("a.jpg", JPEG, "image/jpeg"))]
    assert inference_client.post(path, files=files, data={"task": "tumor"}).status_code == 200


def students_only(weights: Path, *extra: tuple[str, str]) -> dict[str, str]:
    """A weights folder holding each task's student and the ``extra`` (task, role) models, no teacher; the
    inference service's environment that serves it."""
    from diseaseid.paths import weights_dir
    from diseaseid.tasks import TASKS

    for task, role in [(task, "student") for task in TASKS] + list(extra):
        (weights / task).mkdir(exist_ok=True)
        for suffix in (".safetensors", ".json"):
            shutil.copy(weights_dir() / task / f"{role}{suffix}", weights / task)
    return {"DISEASEID_API_KEYS": "", "DISEASEID_WEIGHTS": str(weights)}


def readiness_after_loading(client: httpx.Client) -> dict:
    """The 503 error of ``/readyz`` once the models that can load have loaded."""
    deadline = time.monotonic() + 60
    while "still loading" in (ready := error_of(client.get("/readyz"), 503))["message"]:
        assert time.monotonic() < deadline, "models never finished loading"
        time.sleep(0.1)
    return ready


def test_missing_weights_keep_the_service_unready_but_serving_the_rest(tmp_path):
    from tests.services.conftest import run_server

    env = students_only(tmp_path)  # every teacher is missing
    with run_server("services.inference.main:app", env, ready_path="/healthz") as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            ready = readiness_after_loading(client)
            assert ready["code"] == "not_ready" and "tumor/teacher" in ready["message"]
            assert predict(client).status_code == 200
            assert "not available" in error_of(predict(client, model="teacher"), 503)["message"]
            models = {t["name"]: t for t in client.get("/models").json()["tasks"]}
            assert [m["loaded"] for m in models["tumor"]["models"]] == [True, False]
        assert "cannot load model tumor/teacher" in server.log_text()


def test_a_subject_level_head_that_cannot_load_is_reported_and_never_used_silently(tmp_path):
    """The dementia study head ships without its backbone (the slice model it reads): readiness names it,
    `aggregate=mil` is a 503, and the other slice model answers by the mean of slices, saying so in the
    response."""
    from diseaseid.paths import weights_dir
    from diseaseid.serving.study import study_backbone_role
    from tests.services.conftest import run_server

    backbone = study_backbone_role("dementia")
    other = "student" if backbone == "teacher" else "teacher"
    env = students_only(tmp_path, ("dementia", "mil"), ("dementia", other))
    for suffix in (".safetensors", ".json"):
        (tmp_path / "dementia" / f"{backbone}{suffix}").unlink(missing_ok=True)
    assert (weights_dir() / "dementia" / f"{backbone}.safetensors").exists()  # only the copy lacks it
    with run_server("services.inference.main:app", env, ready_path="/healthz") as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert "dementia/mil" in readiness_after_loading(client)["message"]
            files = [("files", ("a.jpg", JPEG, "image/jpeg"))]
            err = error_of(client.post("/predict/study", files=files, data={"task": "dementia", "aggregate": "mil"}),
                           503)
            assert err["code"] == "not_ready" and "subject-level model of dementia" in err["message"]
            auto = client.post("/predict/study", files=files, data={"task": "dementia", "role": other})
            assert auto.status_code == 200 and auto.json()["aggregation"]["method"] == "mean"
            study = {t["name"]: t["study_model"] for t in client.get("/models").json()["tasks"]}["dementia"]
            assert study is not None and study["loaded"] is False
        assert "cannot load the subject-level model of dementia" in server.log_text()
