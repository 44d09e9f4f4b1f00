"""The web page's server without a browser: what it makes of the services' answers, how it orders and unpacks
uploads, who it lets in, and its errors before any service is asked. Fast; the browser tests
(test_browser.py) run the same code against the real services."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from services.web.access import basic_credentials, is_loopback_host
from services.web.client import Upload, UpstreamError
from services.web.files import Limits, UploadRefused, natural_key, slices_of
from services.web.routers.api import upstream_error
from services.web.settings import WebSettings
from services.web.texts import pick_lang
from services.web.views import conclusion_view, dicom_offer, explain_view, key_slice, percent
from tests.helpers import free_port, make_dicom
from tests.services.conftest import REPO

MODELS = {"tasks": [
    {"name": "tumor", "subject_level": False, "classes": [
        {"name": "glioma", "display_en": "Glioma", "display_ru": "Глиома"},
        {"name": "meningioma", "display_en": "Meningioma", "display_ru": "Менингиома"},
        {"name": "notumor", "display_en": "No tumor", "display_ru": "Опухоль не выявлена"},
        {"name": "pituitary", "display_en": "Pituitary tumor", "display_ru": "Опухоль гипофиза"}]},
    {"name": "dementia", "subject_level": True, "classes": [
        {"name": "NonDemented", "display_en": "Non-demented", "display_ru": "Деменции нет"},
        {"name": "MildDemented", "display_en": "Mild dementia", "display_ru": "Лёгкая деменция"}]}]}
PROBS = {"glioma": 0.9962, "meningioma": 0.0021, "notumor": 0.0011, "pituitary": 0.0006}
MODEL = {"role": "student", "name": "tumor/student:lite0_stage5", "arch": "lite0_stage5", "version": "8261307019b1"}


def slice_answer(**overrides) -> dict:
    return {"task": "tumor", "outcome": "diagnosis", "label": "glioma", "label_index": 0, "display_en": "Glioma",
            "display_ru": "Глиома", "probabilities": PROBS, "model": MODEL,
            "ood": {"flag": False, "score": 40.0, "reasons": [], "detector": "x"}, "screening": None, **overrides}


# -- what the page shows ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("p", "shown"), [(1.0, ">99%"), (0.9962, ">99%"), (0.995, ">99%"), (0.994, "99%"),
                                           (0.5, "50%"), (0.0151, "2%"), (0.006, "1%"), (0.0049, "<1%"),
                                           (0.0, "<1%")])
def test_percent_never_claims_certainty(p, shown):
    assert percent(p) == shown


def test_a_diagnosis_shows_label_bars_in_order_model_and_notice():
    view = conclusion_view(slice_answer(), task="tumor", lang="en", files=["a.jpg"], models=MODELS)
    assert view["diagnosis"] is True and view["title"] == "Conclusion: Glioma"
    assert [(b["name"], b["percent"], b["top"]) for b in view["probabilities"]] == [
        ("Glioma", ">99%", True), ("Meningioma", "<1%", False), ("No tumor", "<1%", False),
        ("Pituitary tumor", "<1%", False)]
    assert view["model"] == "Model: tumor/student:lite0_stage5, version 8261307019b1"
    assert view["notice"] == "Research tool, not a medical device."
    assert view["notes"] == [] and "refusal" not in view


def test_russian_names_come_from_the_registry():
    view = conclusion_view(slice_answer(), task="tumor", lang="ru", files=["a.jpg"], models=MODELS)
    assert view["title"] == "Вывод: Глиома"
    assert [b["name"] for b in view["probabilities"]][1:] == ["Менингиома", "Опухоль не выявлена",
                                                              "Опухоль гипофиза"]
    assert view["model"].startswith("Модель: ")


@pytest.mark.parametrize("outcome", ["not_a_brain_mri", "wrong_task", "some_future_outcome"])
def test_any_outcome_but_diagnosis_is_a_refusal_with_no_class_named(outcome):
    answer = slice_answer(outcome=outcome, label=None, label_index=None, display_en="Not a brain MRI slice",
                          display_ru="Не похоже на срез МРТ мозга")
    view = conclusion_view(answer, task="tumor", lang="en", files=["cat.png"], models=MODELS)
    assert view["diagnosis"] is False
    assert view["refusal"]["title"] == "Not a brain MRI slice"  # the service's own words first
    expected = {"not_a_brain_mri": "does not look like an MRI slice of the brain",
                "wrong_task": "not the kind of MRI this task reads",
                "some_future_outcome": "gives no conclusion for this upload"}[outcome]
    assert expected in view["refusal"]["message"]
    shown = json.dumps(view, ensure_ascii=False).lower()
    for cls in MODELS["tasks"][0]["classes"]:
        assert cls["name"] not in shown and cls["display_en"].lower() not in shown
    assert "probabilities" not in view and "title" not in view


def test_the_outcome_decides_even_when_an_answer_carries_a_label():
    answer = slice_answer(outcome="wrong_task", display_en="Not the kind of MRI this task reads")
    view = conclusion_view(answer, task="tumor", lang="en", files=["a"], models=MODELS)
    assert view["diagnosis"] is False and "glioma" not in json.dumps(view).lower()


def test_a_refusal_uses_a_message_field_in_the_page_language_when_the_answer_has_one():
    answer = slice_answer(outcome="wrong_task", label=None, display_en="x", message_ru="Это МРТ другого вида",
                          message_en="An MRI of another kind")
    assert conclusion_view(answer, task="tumor", lang="ru", files=["a"], models=MODELS)["refusal"]["title"] == (
        "Это МРТ другого вида")
    assert conclusion_view(answer, task="tumor", lang="en", files=["a"], models=MODELS)["refusal"]["title"] == (
        "An MRI of another kind")


def test_a_labelled_answer_without_outcome_is_a_diagnosis_but_a_null_label_is_not():
    answer = slice_answer()
    del answer["outcome"]
    assert conclusion_view(answer, task="tumor", lang="en", files=["a"], models=MODELS)["diagnosis"] is True
    answer["label"] = None
    assert conclusion_view(answer, task="tumor", lang="en", files=["a"], models=MODELS)["diagnosis"] is False


def study_answer(subject: dict, excluded=(), attention=(0.2, 0.7, 0.1)) -> dict:
    slices = [{"index": i, "used": i not in excluded, "outcome": "not_a_brain_mri" if i in excluded else "diagnosis",
               "probabilities": {"NonDemented": 0.1 * (i + 1), "MildDemented": 1 - 0.1 * (i + 1)}}
              for i in range(3)]
    return {"task": "dementia", "model": MODEL, "n_slices": 3, "n_used": 3 - len(excluded),
            "excluded": list(excluded), "subject": subject, "slices": slices,
            "aggregation": {"method": "attention_mil", "attention": list(attention) if attention else None}}


SUBJECT = {"outcome": "diagnosis", "label": "MildDemented", "display_en": "Mild dementia", "display_ru": "Лёгкая",
           "probabilities": {"NonDemented": 0.3, "MildDemented": 0.7}, "ood": {"flag": False},
           "screening": {"impaired_probability": 0.7, "impaired": True, "display_en": "Impairment suspected",
                         "display_ru": "Подозрение"}}


def test_a_study_names_its_slices_in_order_and_the_ones_left_out():
    view = conclusion_view(study_answer(SUBJECT, excluded=(2,)), task="dementia", lang="en",
                           files=["s1.jpg", "s2.jpg", "s3.jpg"], models=MODELS)
    assert view["title"] == "Study of 3 slices. Conclusion: Mild dementia"
    assert view["screening"] == "Screening: Impairment suspected (probability of impairment 70%)"
    assert view["notes"] == ["1 of 3 images did not look like brain MRI slices and were left out of the "
                             "conclusion: no. 3."]
    assert [(f["number"], f["name"], f["note"]) for f in view["files"]] == [
        (1, "s1.jpg", ""), (2, "s2.jpg", ""), (3, "s3.jpg", "left out")]


def test_one_dementia_slice_is_called_weak_evidence():
    answer = slice_answer(task="dementia", label="MildDemented", probabilities=SUBJECT["probabilities"])
    view = conclusion_view(answer, task="dementia", lang="en", files=["a"], models=MODELS)
    assert any("weak evidence" in note for note in view["notes"])


def test_a_study_with_every_slice_left_out_is_refused():
    subject = {**SUBJECT, "outcome": "not_a_brain_mri", "label": None, "display_en": "Not a brain MRI slice"}
    view = conclusion_view(study_answer(subject, excluded=(0, 1, 2)), task="dementia", lang="en",
                           files=["a", "b", "c"], models=MODELS)
    assert view["diagnosis"] is False
    assert view["refusal"]["message"].startswith("None of the 3 images looks like an MRI slice")


def test_key_slice_is_the_heaviest_attention_never_a_slice_left_out():
    assert key_slice(study_answer(SUBJECT), "MildDemented") == 1
    assert key_slice(study_answer(SUBJECT, excluded=(1,)), "MildDemented") == 0
    # No attention weights: the slice most sure of the subject's label (slice 0: MildDemented 0.9).
    assert key_slice(study_answer(SUBJECT, attention=None), "MildDemented") == 0
    assert key_slice(study_answer(SUBJECT, excluded=(0, 1, 2)), "MildDemented") is None


def test_explain_progress_then_pictures_on_the_page_server():
    assert explain_view({"status": "queued", "queue_position": 2}, job_id="j1", lang="en")["text"] == (
        "Heatmaps: waiting in the queue (2 ahead)…")
    assert explain_view({"status": "queued", "queue_position": 0}, job_id="j1", lang="ru")["text"] == (
        "Тепловые карты: в очереди…")
    assert explain_view({"status": "started"}, job_id="j1", lang="en")["text"] == "Heatmaps: computing…"
    finished = {"status": "finished", "result": {
        "outcome": "diagnosis", "target": {"label": "glioma", "display_en": "Glioma", "display_ru": "Глиома"},
        "methods": {"gradcam": {}, "lrp": {}}, "panel_url": "http://127.0.0.1:8001/explain/j1/panel.png"}}
    view = explain_view(finished, job_id="j1", lang="en")
    assert [(i["name"], i["url"]) for i in view["images"]] == [("gradcam", "api/explain/j1/gradcam.png"),
                                                               ("lrp", "api/explain/j1/lrp.png")]
    assert view["images"][0]["caption"] == "Grad-CAM: regions that most raised the score of “Glioma”."
    assert view["panel_url"] == "api/explain/j1/panel.png"  # never the explain service's own address
    failed = explain_view({"status": "failed", "error": {"message": "Traceback ..."}}, job_id="j1", lang="en")
    assert failed["status"] == "failed" and "Traceback" not in failed["text"]
    refused = explain_view({"status": "finished", "result": {**finished["result"], "outcome": "not_a_brain_mri"}},
                           job_id="j1", lang="en")
    assert refused["status"] == "refused" and "images" not in refused


def test_dicom_results_are_offered_for_dicom_uploads_and_a_note_says_why_not_otherwise():
    assert dicom_offer(True, "en") == {"sr": {
        "url": "api/dicom/sr", "text": "Download the result as DICOM (SR)",
        "hint": "A DICOM Structured Report in the study of the uploaded images: the conclusion, its probability "
                "and the model, for a PACS or a DICOM viewer."}}
    assert dicom_offer(True, "ru")["sr"]["text"] == "Скачать результат в DICOM (SR)"
    note = dicom_offer(False, "en")
    assert list(note) == ["sr_note"] and note["sr_note"].startswith("No DICOM result (SR) for JPEG or PNG files")
    assert dicom_offer(False, "ru")["sr_note"].startswith("Для файлов JPEG и PNG результата в DICOM (SR) нет")
    # The heatmaps of a DICOM slice's job as DICOM, on the page's own server, in a fixed order.
    root = "http://127.0.0.1:8001/explain/j1/dicom"
    result = {"outcome": "diagnosis", "target": {"label": "glioma", "display_en": "Glioma"},
              "methods": {"gradcam": {}, "lrp": {}},
              "dicom": {"url": root, "objects": {n: f"{root}/{n}.dcm" for n in ("sr", "panel", "lrp", "gradcam")}}}
    view = explain_view({"status": "finished", "result": result}, job_id="j1", lang="ru")
    assert view["dicom"]["heading"] == "Тепловые карты в DICOM, для PACS или программы просмотра DICOM:"
    assert [(x["name"], x["url"], x["filename"]) for x in view["dicom"]["links"]] == [
        (n, f"api/explain/j1/dicom/{n}.dcm", f"diseaseid-{n}.dcm") for n in ("gradcam", "lrp", "panel", "sr")]
    assert [x["text"] for x in view["dicom"]["links"]] == ["изображение Grad-CAM", "изображение LRP", "панель",
                                                           "SR со ссылками на них"]
    # A JPEG's job (dicom null), or a service that does not say: no DICOM links.
    for dicom in (None, {"url": root}):
        assert "dicom" not in explain_view({"status": "finished", "result": {**result, "dicom": dicom}},
                                           job_id="j1", lang="en")


def test_the_sr_route_refuses_what_names_no_study_before_asking_a_service(local):
    jpeg = local.post("/api/dicom/sr", data={"task": "tumor", "lang": "en"},
                      files={"files": ("a.jpg", b"\xff\xd8x", "image/jpeg")})
    assert jpeg.status_code == 406 and jpeg.json()["error"]["code"] == "not_acceptable"
    assert jpeg.json()["error"]["message"].startswith("No DICOM result (SR) for JPEG or PNG files")
    mixed = local.post("/api/dicom/sr", data={"task": "tumor"},
                       files=[("files", ("a.dcm", dicom_with_number(1), "application/dicom")),
                              ("files", ("b.jpg", b"\xff\xd8x", "image/jpeg"))])
    assert mixed.status_code == 406
    down = local.post("/api/dicom/sr", data={"task": "tumor"},
                      files={"files": ("a.dcm", dicom_with_number(1), "application/dicom")})
    assert down.status_code == 503  # a DICOM upload goes to the service, which is down here
    assert local.get("/api/explain/abc/dicom/secrets.dcm").status_code == 404
    assert local.get("/api/explain/abc/dicom/sr.dcm").status_code == 503  # asked, the service is down


# -- uploads: order, zips, limits ---------------------------------------------------------------------------

LIMITS = Limits(max_files=4, max_file_bytes=1000, max_total_bytes=2500)


def zip_of(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_files_are_read_in_number_aware_name_order():
    names = ["slice_10.jpg", "slice_2.jpg", "Slice_1.jpg", "slice_2b.jpg"]
    ordered = slices_of([Upload(n, b"x") for n in names], LIMITS)
    assert [s.name for s in ordered] == ["Slice_1.jpg", "slice_2.jpg", "slice_2b.jpg", "slice_10.jpg"]
    assert natural_key("a9") < natural_key("a10")


def test_a_zip_is_unpacked_without_folders_hidden_files_or_dicomdir():
    data = zip_of({"study/s3.png": b"3", "study/s1.png": b"1", "__MACOSX/study/._s1.png": b"junk",
                   "study/.DS_Store": b"junk", "study/DICOMDIR": b"index"})
    slices = slices_of([Upload("study.zip", data)], LIMITS)
    assert [(s.name, s.content) for s in slices] == [("s1.png", b"1"), ("s3.png", b"3")]


@pytest.mark.parametrize(("uploads", "key", "status"), [
    ([], "error_no_files", 400),
    ([Upload("big.jpg", b"x" * 1001)], "error_file_too_large", 413),
    ([Upload(f"{i}.jpg", b"x") for i in range(5)], "error_too_many_files", 422),
    ([Upload(f"{i}.jpg", b"x" * 900) for i in range(3)], "error_upload_too_large", 413),
    ([Upload("bomb.zip", zip_of({"a.png": b"\0" * 5000}))], "error_file_too_large", 413),
    ([Upload("many.zip", zip_of({f"{i}.png": b"x" for i in range(5)}))], "error_too_many_files", 422),
    ([Upload("broken.zip", b"PK\x03\x04 this is not a zip")], "error_bad_zip", 422),
    ([Upload("empty.zip", zip_of({"__MACOSX/x": b""}))], "error_empty_zip", 422),
])
def test_uploads_that_cannot_be_sent_are_refused_with_a_reason(uploads, key, status):
    with pytest.raises(UploadRefused) as refused:
        slices_of(uploads, LIMITS)
    assert (refused.value.key, refused.value.status) == (key, status)


def dicom_with_number(number: int | None) -> bytes:
    import numpy as np

    return make_dicom(np.zeros((32, 32), np.uint16), **({} if number is None else {"InstanceNumber": number}))


def test_a_dicom_series_is_ordered_by_instance_number_not_by_name():
    series = [Upload(name, dicom_with_number(n)) for name, n in (("IM_A", 12), ("IM_B", 2), ("IM_C", 7))]
    limits = Limits(10, 10**6, 10**7)
    assert [s.name for s in slices_of(series, limits)] == ["IM_B", "IM_C", "IM_A"]
    # One without a number: the whole series falls back to name order.
    series.append(Upload("IM_0", dicom_with_number(None)))
    assert [s.name for s in slices_of(series, limits)] == ["IM_0", "IM_A", "IM_B", "IM_C"]


# -- errors in the reader's words -------------------------------------------------------------------------

SETTINGS = WebSettings(_env_file=None)
SLICES = [Upload("a.jpg", b""), Upload("notes.txt", b"")]


@pytest.mark.parametrize(("status", "code", "message", "expected"), [
    (415, "unsupported_media_type", "file 1: the file is not a JPEG, PNG or DICOM image",
     "“notes.txt” is not an image this tool can read."),
    (422, "invalid_image", "the image is empty", "“a.jpg” could not be read as an MRI slice"),
    (422, "image_too_large", "file 0: 5000 x 5000", "“a.jpg” is far larger than an MRI slice"),
    (503, "busy", "busy", "The analysis service is busy or still starting."),
    (503, "unavailable", "ConnectError", "The analysis service is not reachable right now."),
    (504, "timeout", "no answer in time", "The analysis took too long"),
    (422, "cannot_write_dicom", "file 0: the DICOM header has no StudyInstanceUID",
     "No DICOM result could be made for these files: file 0: the DICOM header has no StudyInstanceUID"),
])
def test_service_refusals_in_a_clinicians_words(status, code, message, expected):
    error = upstream_error(UpstreamError("inference", status, code, message), "en", SLICES, SETTINGS)
    assert (error.status, error.code) == (status, code)
    assert error.message.startswith(expected)


def test_an_unknown_refusal_keeps_the_services_reason_and_status():
    error = upstream_error(UpstreamError("inference", 409, "conflict", "odd"), "ru", SLICES, SETTINGS)
    assert (error.status, error.message) == (409, "Загрузку не удалось проанализировать: odd")


def test_language_from_the_query_then_the_browser_then_english():
    assert pick_lang("ru", "en-GB") == "ru"
    assert pick_lang(None, "de-DE,ru;q=0.8,en;q=0.5") == "ru"
    assert pick_lang("fr", "de") == "en"


# -- the app: access, the page, errors before any service -------------------------------------------------

def app_with(**settings):
    from services.web.main import create_app

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: the services are "down"
    return create_app(WebSettings(_env_file=None, inference_url=dead, explain_url=dead, **settings))


@pytest.fixture(scope="module")
def local():
    with TestClient(app_with(), base_url="http://127.0.0.1:8080", client=("127.0.0.1", 50000)) as client:
        yield client


def test_without_users_only_this_machine_is_served(local):
    assert local.get("/").status_code == 200
    outsider = TestClient(local.app, base_url="http://127.0.0.1:8080", client=("192.0.2.7", 50000))
    refused = outsider.get("/")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert outsider.get("/healthz").status_code == 200  # probes stay open
    # A site that rebinds its name to 127.0.0.1 reaches loopback, but asks for its own host name.
    rebound = TestClient(local.app, base_url="http://evil.example:8080", client=("127.0.0.1", 50000))
    assert rebound.get("/").status_code == 403
    assert is_loopback_host("[::1]:8080") and is_loopback_host("localhost") and not is_loopback_host("10.0.0.1")


def test_with_users_every_page_route_asks_for_a_login():
    app = app_with(web_users=(("alice", SecretStr("s3cret:pw")),))
    anon = TestClient(app, base_url="http://203.0.113.5:8080", client=("203.0.113.9", 50000))
    response = anon.get("/")
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Basic ")
    assert anon.get("/", auth=("alice", "wrong")).status_code == 401
    assert anon.get("/", auth=("mallory", "s3cret:pw")).status_code == 401
    assert anon.get("/", auth=("alice", "s3cret:pw")).status_code == 200  # a password may hold ':'
    assert anon.get("/static/app.js").status_code == 401
    assert anon.get("/healthz").status_code == 200
    assert basic_credentials("Basic !!!") is None


def test_anonymous_access_is_an_explicit_choice():
    app = app_with(web_allow_anonymous=True)
    assert TestClient(app, client=("192.0.2.7", 1)).get("/").status_code == 200


def test_a_post_from_another_site_is_refused(local):
    files = {"files": ("a.jpg", b"x", "image/jpeg")}
    foreign = local.post("/api/analyse", data={"task": "tumor"}, files=files,
                         headers={"Origin": "http://evil.example"})
    assert foreign.status_code == 403
    sandboxed = local.post("/api/analyse", data={"task": "tumor"}, files=files, headers={"Origin": "null"})
    assert sandboxed.status_code == 403


def test_the_page_keeps_to_itself_and_speaks_the_browsers_language(local):
    page = local.get("/", headers={"Accept-Language": "ru-RU,ru;q=0.9"})
    assert '<html lang="ru">' in page.text and "Анализировать" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "http://" not in page.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    data = page.text.split('id="page-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and json.loads(data)["lang"] == "ru"
    assert local.get("/static/app.css").headers["content-type"].startswith("text/css")


def test_errors_before_and_without_the_services(local):
    none = local.post("/api/analyse", data={"task": "tumor", "lang": "ru"})
    assert none.status_code == 400 and none.json()["error"]["message"] == "Сначала выберите хотя бы один файл."
    down = local.post("/api/analyse", data={"task": "tumor"}, files={"files": ("a.jpg", b"\xff\xd8x", "image/jpeg")})
    assert down.status_code == 503
    assert down.json()["error"]["message"].startswith("The analysis service is not reachable right now.")
    assert local.get("/readyz").status_code == 503
    assert local.get("/api/explain/../../etc").status_code == 404
    assert local.get("/api/explain/job%2F..").status_code in (400, 404)
    assert local.get("/api/explain/abc/secrets.png").status_code == 404


# What the page's server may load of the ML core: the answers' models (pydantic, what it reads the services'
# answers with), the memory policy of the upload decoding it shares, and how every text writes a probability
# (diseaseid.percent); no model code, no torch, no numpy.
LIGHT_CORE = {"diseaseid", "diseaseid.answers", "diseaseid.outcomes", "diseaseid.memory", "diseaseid.percent"}


def test_the_page_server_imports_no_model_code():
    code = ("import json, sys, services.web.main; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diseaseid', 'numpy'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert loaded <= LIGHT_CORE, sorted(loaded - LIGHT_CORE)
