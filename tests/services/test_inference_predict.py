"""Happy paths of the inference service over real HTTP: tasks x models, PNG, DICOM, studies, /models."""
from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from diseaseid.models.checkpoint import read_card
from diseaseid.serving import shipped_mil, shipped_weights
from diseaseid.serving.study import study_backbone_role
from diseaseid.tasks import TASKS
from tests.helpers import PATIENT_ID, PATIENT_NAME, make_dicom, png_bytes
from tests.services.conftest import FIXTURES, fixture_bytes

FIRST_CLASS = {"tumor": "glioma", "dementia": "NonDemented"}


def post_predict(client, data: bytes, task: str, model: str | None = None, name: str = "slice.jpg",
                 content_type: str = "image/jpeg"):
    form = {"task": task} if model is None else {"task": task, "model": model}
    return client.post("/predict", files={"file": (name, data, content_type)}, data=form)


def check_conclusion(body: dict, task: str) -> None:
    classes = TASKS[task].classes
    assert list(body["probabilities"]) == list(classes)
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-4
    probs = body["probabilities"]
    assert isinstance(body["ood"]["flag"], bool) and isinstance(body["ood"]["score"], float)
    if body["ood"]["flag"]:  # not a brain MRI slice: no diagnosis, the probabilities stay
        assert body["outcome"] == "not_a_brain_mri" and body["label"] is None and body["label_index"] is None
        assert body["screening"] is None and body["ood"]["reasons"]
        return
    assert body["outcome"] == "diagnosis"
    assert body["label"] == classes[body["label_index"]] == max(probs, key=probs.get)
    assert body["display_en"] == TASKS[task].display(body["label_index"], "en")
    assert body["display_ru"] == TASKS[task].display(body["label_index"], "ru")


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("model", ["student", "teacher"])
def test_predict_answers_for_every_task_and_model(inference_client, task, model):
    data = fixture_bytes(task, FIRST_CLASS[task])
    r = post_predict(inference_client, data, task, model)
    assert r.status_code == 200, r.text
    body = r.json()
    check_conclusion(body, task)
    card = read_card(shipped_weights(task, model))
    assert body["task"] == task
    assert body["model"] == {"role": model, "name": f"{task}/{model}:{card['arch']}", "arch": card["arch"],
                             "version": card["version"]}
    width, height = Image.open(io.BytesIO(data)).size
    assert body["input"] == {"sha256": hashlib.sha256(data).hexdigest(), "format": "jpeg",
                             "size_bytes": len(data), "width": width, "height": height}
    timing = body["timing_ms"]
    assert 0 < timing["inference"] <= timing["total"] and 0 <= timing["decode"] <= timing["total"]


def test_default_model_follows_the_cards_and_answers_are_deterministic(inference_client):
    """With no model named, the most accurate shipped model answers unless the student is within 0.5 points of
    it (the tumor student is also the OOD detector, so it answers with one forward pass), and GET /models says
    which and why."""
    from diseaseid.serving import default_model

    data = fixture_bytes("tumor", "meningioma")
    expected = default_model("tumor").role
    default = post_predict(inference_client, data, "tumor").json()
    named = post_predict(inference_client, data, "tumor", expected).json()
    assert default["model"]["role"] == expected
    assert default["probabilities"] == named["probabilities"]
    assert default["screening"] is None  # tumor has no screening answer; dementia's is checked with studies
    tumor = next(t for t in inference_client.get("/models").json()["tasks"] if t["name"] == "tumor")
    assert tumor["default_model"]["role"] == expected
    assert [m["role"] for m in tumor["models"] if m["default"]] == [expected]
    acc = {m["role"]: m["card"]["metrics"]["validation"]["accuracy"] for m in tumor["models"]}
    best = max(acc, key=acc.get)
    within = acc["student"] >= acc[best] - 0.005
    assert expected == ("student" if within else best)
    if within and best != "student":
        assert tumor["default_model"]["reason"] == (f"the student ({acc['student']:.1%}) is within 0.5% of the "
                                                    f"{best} ({acc[best]:.1%}) and faster")


def test_png_inputs_of_any_mode_are_accepted(inference_client):
    gray = np.asarray(Image.open(io.BytesIO(fixture_bytes("tumor", "pituitary"))).convert("L"))
    for img in (Image.fromarray(gray), Image.fromarray(gray.astype(np.uint16) * 257),
                Image.fromarray(np.dstack([gray] * 3 + [np.full_like(gray, 255)]), "RGBA")):
        buf = io.BytesIO()
        img.save(buf, "PNG")
        r = post_predict(inference_client, buf.getvalue(), "tumor", name="x.bin",
                         content_type="application/octet-stream")
        assert r.status_code == 200, r.text
        assert r.json()["input"]["format"] == "png"
        check_conclusion(r.json(), "tumor")


def test_dicom_slice_answers_like_its_jpeg_and_hides_patient_tags(inference_client, inference_server):
    jpeg = fixture_bytes("tumor", "glioma", 1)
    gray = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"))
    lo, hi = int(gray.min()), int(gray.max())
    assert hi > lo
    # Stored 12-bit values with a rescale, as a scanner would write them; the rescale undoes itself.
    stored = ((gray.astype(np.float64) - lo) * (4000 / (hi - lo))).round().astype(np.uint16)
    dicom = make_dicom(stored, bits_stored=12, slope=0.5, intercept=10.0)
    from_dicom = post_predict(inference_client, dicom, "tumor", name="slice.dcm",
                              content_type="application/dicom")
    assert from_dicom.status_code == 200, from_dicom.text
    assert from_dicom.json()["input"]["format"] == "dicom"
    # The JPEG path stretches nothing; feed it the same stretched slice as a PNG to compare like with like.
    stretched = ((gray.astype(np.float64) - lo) * (255 / (hi - lo))).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(stretched).save(buf, "PNG")
    from_png = post_predict(inference_client, buf.getvalue(), "tumor").json()
    a, b = from_dicom.json()["probabilities"], from_png["probabilities"]
    assert max(abs(a[c] - b[c]) for c in a) < 0.02
    top2 = sorted(b.values())[-2:]
    if top2[1] - top2[0] > 0.01:  # a near tie may flip on a one-level rounding difference
        assert from_dicom.json()["label"] == from_png["label"]
    secrets = (PATIENT_NAME.split("^")[0], PATIENT_ID)
    assert not any(s in from_dicom.text for s in secrets)
    assert not any(s in inference_server.log_text() for s in secrets)


def test_study_returns_every_slice_and_their_mean(inference_client):
    subject = "NonDemented-003"
    paths = sorted((FIXTURES / "dementia" / "NonDemented").glob(f"{subject}_*.jpg"))
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
    r = inference_client.post("/predict/study", files=files, data={"task": "dementia", "aggregate": "mean"})
    assert r.status_code == 200, r.text
    body = r.json()
    from diseaseid.serving import default_model

    assert body["task"] == "dementia" and body["model"]["role"] == default_model("dementia").role
    assert body["aggregation"] == {"method": "mean", "model": None, "attention": None}
    assert body["n_slices"] == len(paths) == len(body["slices"])
    for i, (p, s) in enumerate(zip(paths, body["slices"], strict=True)):
        assert s["index"] == i and s["input"]["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()
        check_conclusion(s, "dementia")
    check_conclusion(body["subject"], "dementia")
    classes = TASKS["dementia"].classes
    used = [s for s in body["slices"] if s["used"]]  # flagged slices are left out
    assert body["excluded"] == [s["index"] for s in body["slices"] if s["ood"]["flag"]]
    assert body["n_used"] == len(used) == len(paths) - len(body["excluded"]) > 0
    mean = np.mean([[s["probabilities"][c] for c in classes] for s in used], axis=0)
    assert np.allclose([body["subject"]["probabilities"][c] for c in classes], mean, atol=1e-6)
    # Each slice's answer in the study equals the answer to that slice alone.
    alone = post_predict(inference_client, paths[0].read_bytes(), "dementia").json()["probabilities"]
    assert all(abs(alone[c] - body["slices"][0]["probabilities"][c]) < 1e-5 for c in classes)


def test_dementia_study_is_answered_by_the_shipped_mil_head(inference_client):
    """By default a dementia study goes through the shipped subject-level head over its slice model's embeddings,
    in the order the slices were sent; the answer equals the ML core's on the same decoded slices."""
    from diseaseid.serving import Predictor, StudyModel
    from services.common.images import decode_image_bytes
    from services.common.settings import ServiceSettings

    paths = sorted((FIXTURES / "dementia" / "MildDemented").glob("MildDemented-002_*.jpg"))
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
    body = inference_client.post("/predict/study", files=files, data={"task": "dementia"}).json()
    # The head reads the slices the OOD check passes (all of them, unless one is flagged).
    paths = [p for p, s in zip(paths, body["slices"], strict=True) if s["used"]]
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
    body = inference_client.post("/predict/study", files=files, data={"task": "dementia"}).json()
    assert body["excluded"] == [] and body["n_used"] == len(paths) >= 2
    agg = body["aggregation"]
    study = StudyModel.from_shipped("dementia", Predictor.from_shipped("dementia", study_backbone_role("dementia")))
    assert body["slice_model"]["role"] == study_backbone_role("dementia")
    assert agg["method"] == study.method and agg["model"]["name"] == study.name
    assert agg["method"] in ("attention_mil", "pooled_linear", "pooled_ordinal", "pooled_slices")
    listed = {t["name"]: t["study_model"] for t in inference_client.get("/models").json()["tasks"]}
    assert listed["tumor"] is None and listed["dementia"]["loaded"]
    assert listed["dementia"]["version"] == agg["model"]["version"] == read_card(shipped_mil("dementia"))["version"]
    assert len(agg["attention"]) == len(paths) and abs(sum(agg["attention"]) - 1) < 1e-4
    check_conclusion(body["subject"], "dementia")
    screening = body["subject"]["screening"]
    assert screening["impaired_probability"] == pytest.approx(1 - body["subject"]["probabilities"]["NonDemented"],
                                                              abs=1e-6)
    assert screening["impaired"] == (screening["impaired_probability"] >= 0.5)

    images = np.stack([decode_image_bytes(p.read_bytes(), ServiceSettings()).array for p in paths])
    expected = study.predict(images)
    classes = TASKS["dementia"].classes
    assert np.allclose([body["subject"]["probabilities"][c] for c in classes], expected.probabilities, atol=1e-5)
    assert np.allclose(agg["attention"], expected.attention, atol=1e-5)
    # Slice order is stack order: sent top first, the server answers what the core answers for that order
    # (the same for an order-free head such as pooled_slices, another one for heads that read positions).
    flipped = inference_client.post("/predict/study", files=files[::-1], data={"task": "dementia"}).json()
    expected_flipped = study.predict(images[::-1].copy())
    assert np.allclose([flipped["subject"]["probabilities"][c] for c in classes],
                       expected_flipped.probabilities, atol=1e-5)
    assert np.allclose(flipped["aggregation"]["attention"], expected_flipped.attention, atol=1e-5)
    if study.method == "pooled_slices":  # each slice keeps its weight wherever it is sent
        assert np.allclose(flipped["aggregation"]["attention"][::-1], agg["attention"], atol=1e-5)


@pytest.mark.parametrize("name", ["cat_on_black", "text_on_black"])
def test_non_mri_image_gets_no_diagnosis_from_any_model(inference_client, name):
    """The student once answered a grayscale cat on black "notumor 94%", unflagged. Now every model's
    answer carries the task's detector's verdict: no label, probabilities kept."""
    pytest.importorskip("skimage")
    from diseaseid.ood import images as ood_images
    from diseaseid.ood.detector import detector_of

    data = png_bytes(getattr(ood_images, name)())
    for task in sorted(TASKS):
        det_task, det_role = detector_of(task)
        detector = f"{det_task}/{det_role}:{read_card(shipped_weights(det_task, det_role))['arch']}"
        bodies = {}
        for model in ("student", "teacher"):
            r = post_predict(inference_client, data, task, model, name="x.png", content_type="image/png")
            assert r.status_code == 200, r.text
            body = bodies[model] = r.json()
            check_conclusion(body, task)
            assert body["ood"]["flag"] and body["outcome"] == "not_a_brain_mri" and body["label"] is None
            assert body["display_en"] == "Not a brain MRI slice" and body["ood"]["detector"] == detector
        student, teacher = bodies["student"]["ood"], bodies["teacher"]["ood"]
        assert student["score"] == pytest.approx(teacher["score"], abs=1e-4)
        assert (student["flag"], student["reasons"], student["detector"]) == (
            teacher["flag"], teacher["reasons"], teacher["detector"])


def test_study_leaves_a_cat_out_and_says_so(inference_client):
    """One cat among two meningioma slices once left the subject "meningioma" with the flag false."""
    pytest.importorskip("skimage")
    from diseaseid.ood.images import cat_on_black

    mri = [fixture_bytes("tumor", "meningioma", i) for i in range(4)]
    mri = [d for d in mri if not post_predict(inference_client, d, "tumor").json()["ood"]["flag"]][:2]
    assert len(mri) == 2
    files = [("files", ("a.jpg", mri[0], "image/jpeg")), ("files", ("cat.png", png_bytes(cat_on_black()), "image/png")),
             ("files", ("b.jpg", mri[1], "image/jpeg"))]
    body = inference_client.post("/predict/study", files=files, data={"task": "tumor"}).json()
    assert (body["n_slices"], body["n_used"], body["excluded"]) == (3, 2, [1])
    assert [s["used"] for s in body["slices"]] == [True, False, True]
    assert body["slices"][1]["outcome"] == "not_a_brain_mri" and body["slices"][1]["label"] is None
    without = inference_client.post("/predict/study", files=files[::2], data={"task": "tumor"}).json()
    assert without["excluded"] == [] and without["n_used"] == 2
    subject = body["subject"]
    check_conclusion(subject, "tumor")
    assert subject["outcome"] == "diagnosis" and subject["label"] == without["subject"]["label"] is not None
    assert subject["probabilities"] == pytest.approx(without["subject"]["probabilities"], abs=1e-6)
    # Every slice flagged: the subject gets no diagnosis.
    only = inference_client.post("/predict/study", files=files[1:2], data={"task": "tumor"}).json()
    assert (only["n_used"], only["excluded"]) == (0, [0])
    assert only["subject"]["outcome"] == "not_a_brain_mri" and only["subject"]["label"] is None


def test_study_aggregation_choices(inference_client):
    files = [("files", ("a.jpg", fixture_bytes("tumor", "glioma"), "image/jpeg"))]
    tumor = inference_client.post("/predict/study", files=files, data={"task": "tumor"}).json()
    assert tumor["aggregation"]["method"] == "mean"  # no subject-level head for tumor
    r = inference_client.post("/predict/study", files=files, data={"task": "tumor", "aggregate": "mil"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_aggregation"
    assert "aggregate=mean" in r.json()["error"]["message"]
    r = inference_client.post("/predict/study", files=files, data={"task": "dementia", "aggregate": "median"})
    assert r.status_code == 422 and "mil, mean" in r.json()["error"]["message"]


def test_models_lists_tasks_classes_and_cards(inference_client):
    r = inference_client.get("/models")
    assert r.status_code == 200
    tasks = {t["name"]: t for t in r.json()["tasks"]}
    assert set(tasks) == set(TASKS)
    for name, info in tasks.items():
        assert [c["name"] for c in info["classes"]] == list(TASKS[name].classes)
        roles = {m["role"]: m for m in info["models"]}
        from diseaseid.serving import default_model

        assert set(roles) == {"student", "teacher"} and roles[default_model(name).role]["default"]
        assert sum(m["default"] for m in roles.values()) == 1
        for role, m in roles.items():
            card = read_card(shipped_weights(name, role))
            assert m["loaded"] and m["version"] == card["version"] and m["card"]["arch"] == card["arch"]


def test_health_readiness_and_docs(inference_client):
    assert inference_client.get("/healthz").json()["status"] == "alive"
    ready = inference_client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["models_loaded"] == 2 * len(TASKS)
    spec = inference_client.get("/openapi.json").json()
    for path in ("/predict", "/predict/study", "/models", "/healthz", "/readyz", "/metrics"):
        assert path in spec["paths"]
    assert "examples" in json.dumps(spec["components"]["schemas"]["PredictResponse"])
    assert {"400", "413", "415", "422"} <= set(spec["paths"]["/predict"]["post"]["responses"])
    assert inference_client.get("/docs").status_code == 200


def _placeholder_weights() -> bool:
    return any(read_card(shipped_weights(t, "student")).get("placeholder") for t in TASKS)


@pytest.mark.skipif(_placeholder_weights(), reason="shipped weights are untrained placeholders")
def test_trained_student_gets_most_tumor_fixtures_right(inference_client):
    right = total = 0
    for cls in TASKS["tumor"].classes:
        for path in sorted((FIXTURES / "tumor" / cls).glob("*.jpg")):
            total += 1
            right += post_predict(inference_client, path.read_bytes(), "tumor").json()["label"] == cls
    assert right >= 0.75 * total, f"{right}/{total}"


def test_a_study_answer_names_what_produced_the_subject_answer(inference_client):
    """`model` once named the slice student while the subject answer came from the MIL head. Now `model` is
    what produced the subject answer (the head, reading the teacher's embeddings; the slice model when the
    slices' probabilities were averaged) and `slice_model` the model of every slice."""
    from diseaseid.ood.images import text_on_black
    from diseaseid.serving import Predictor, StudyModel

    paths = sorted((FIXTURES / "dementia").glob("*/*.jpg"))
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
    one = post_predict(inference_client, paths[0].read_bytes(), "dementia", "student").json()
    body = inference_client.post("/predict/study", files=files, data={"task": "dementia", "model": "student"}).json()
    assert body["slice_model"] == one["model"] and body["slice_model"]["role"] == "student"
    assert body["n_used"] > 0  # the head answered (it reads the slices the OOD check passes)
    backbone = Predictor.from_shipped("dementia", study_backbone_role("dementia"))
    study = StudyModel.from_shipped("dementia", backbone)
    assert body["model"] == {"role": "mil", "name": study.name, "arch": study.card["arch"], "version": study.version,
                             "reads": backbone.name}
    assert body["aggregation"]["model"] == {"name": study.name, "version": study.version}
    # the mean of the slices' probabilities: the slice model answered the subject too
    mean = inference_client.post("/predict/study", files=files[:3],
                                 data={"task": "dementia", "model": "student", "aggregate": "mean"}).json()
    assert mean["model"] == {**one["model"], "reads": None} and mean["slice_model"] == one["model"]
    # no head for tumor; and a study whose every slice is flagged has no head answer either
    tumor = inference_client.post("/predict/study", files=[("files", ("a.jpg", fixture_bytes("tumor", "glioma"),
                                                                      "image/jpeg"))], data={"task": "tumor"}).json()
    assert tumor["model"] == {**tumor["slice_model"], "reads": None}
    flagged = inference_client.post("/predict/study", data={"task": "dementia", "model": "teacher"},
                                    files=[("files", ("t.png", png_bytes(text_on_black()), "image/png"))]).json()
    assert flagged["n_used"] == 0 and flagged["subject"]["label"] is None
    assert flagged["model"] == {**flagged["slice_model"], "reads": None} and flagged["model"]["role"] == "teacher"
