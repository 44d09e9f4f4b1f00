"""The bot's small pure parts and its HTTP client's failure modes (against real sockets, no mocks)."""
from __future__ import annotations

import asyncio
import socket

import pytest
from pydantic import ValidationError

from diseaseid.answers import PredictResponse, StudyResponse, example
from services.bot.client import DiseaseIdClient, ServiceTimeout, ServiceUnavailable, UnexpectedAnswer
from services.bot.formatting import bar, conclusion_text
from services.bot.media import sniff
from services.bot.ratelimit import RateLimiter
from services.bot.views import Upload, parse_class_names, read_prediction, read_study
from tests.bot.conftest import tumor_slice
from tests.helpers import free_port, png_bytes
from tests.services.test_answers import flat, one_answer_server


def test_rate_limit_window_slides():
    now = [0.0]
    limiter = RateLimiter(2, window_s=60, clock=lambda: now[0])
    assert limiter.hit(1) == 0 and limiter.hit(1) == 0
    assert limiter.hit(1) == pytest.approx(60)
    assert limiter.hit(2) == 0, "limits are per user"
    now[0] = 30.0
    assert limiter.hit(1) == pytest.approx(30)
    now[0] = 60.0
    assert limiter.hit(1) == 0, "the first hit left the window"
    assert RateLimiter(0).hit(1) == 0, "0 switches the limit off"


def test_bar_is_fixed_width():
    assert bar(0.0) == "░" * 10 and bar(1.0) == "█" * 10 and bar(0.26) == "███░░░░░░░"


def test_sniff_tells_formats_by_their_bytes():
    assert sniff(tumor_slice().read_bytes()) == "image/jpeg"
    assert sniff(png_bytes(tumor_slice())) == "image/png"
    assert sniff(b"\0" * 128 + b"DICM" + b"\0" * 16) == "application/dicom"
    assert sniff(b"GIF89a....") is None


DEMENTIA = {"NonDemented": 0.1, "VeryMildDemented": 0.2, "MildDemented": 0.6, "ModerateDemented": 0.1}
TEACHER = {"role": "teacher", "name": "dementia/teacher:convnet2", "arch": "convnet2", "version": "abc"}


def study_slice(index: int, mild: float, **extra) -> dict:
    """One entry of a study's ``slices`` (the OpenAPI example's) with P(MildDemented) = ``mild``."""
    entry = example(StudyResponse)["slices"][0]
    return {**entry, "index": index, "probabilities": {**entry["probabilities"], "MildDemented": mild}, **extra}


# A whole /predict/study body: a flagged subject that still has a label gets the OOD warning under it.
STUDY = {**example(StudyResponse), "model": TEACHER, "slice_model": TEACHER, "n_slices": 2, "n_used": 2,
         "subject": {"outcome": "diagnosis", "label": "MildDemented", "label_index": 2,
                     "display_en": "Mild dementia", "display_ru": "Лёгкая деменция", "probabilities": DEMENTIA,
                     "ood": {"flag": True, "score": 3.0, "reasons": ["low contrast"]}},
         "aggregation": {"method": "mean", "model": None, "attention": None},
         "slices": [study_slice(0, 0.5), study_slice(1, 0.5)]}


def test_study_conclusion_reads_the_subject_and_warns_when_out_of_distribution():
    c = read_study(STUDY)
    assert (c.label, c.model_role, c.n_slices, c.ood, c.ood_reasons) == (
        "MildDemented", "teacher", 2, True, ("low contrast",))
    text = conclusion_text(c, "en", study=True)
    assert "Study of 2 slices. Conclusion: <b>Mild dementia</b>" in text
    assert "does not look like the MRI slices the model was trained on (low contrast)" in text
    assert "dementia/teacher:convnet2 (abc)" in text
    assert "Лёгкая деменция" in conclusion_text(c, "ru", study=True)


def test_a_study_names_the_head_and_explains_with_the_slice_model():
    """A study's `model` is what produced the subject answer (the MIL head), `slice_model` the model of each
    slice; the conclusion names the head, the heatmaps are asked of the slice model (the explain service knows
    no "mil" model)."""
    body = {**STUDY, "model": {"role": "mil", "name": "dementia/mil:attention_mil", "arch": "attention_mil",
                               "version": "3f2a", "reads": "dementia/teacher:lite0"},
            "slice_model": {"role": "student", "name": "dementia/student:convnet1", "arch": "convnet1",
                            "version": "1f39"}}
    c = read_study(body)
    assert (c.model_name, c.model_version, c.model_role) == ("dementia/mil:attention_mil", "3f2a", "student")
    assert "Model: dementia/mil:attention_mil (3f2a)" in conclusion_text(c, "en", study=True)


def test_key_slice_of_a_study():
    """Attention picks the slice where a subject-level head answered; else the slice most sure of the label."""
    by_mean = {**STUDY, "n_slices": 3, "slices": [study_slice(i, p) for i, p in enumerate((0.2, 0.7, 0.5))]}
    assert read_study(by_mean).key_slice == 1
    by_mil = {**by_mean, "aggregation": {"method": "attention_mil", "attention": [0.1, 0.2, 0.7]}}
    assert read_study(by_mil).key_slice == 2


@pytest.mark.parametrize("change", [
    {"slices": [{"probabilities": "x"}] * 2},  # not the slices' shape
    {"subject": {**STUDY["subject"], "outcome": "something_new"}},  # an outcome the contract does not have
    {"aggregation": None},  # a required part missing
    {"subject": {**STUDY["subject"], "ood": True, "ood_score": 3.0}},  # the flat prediction of old workers
])
def test_a_study_body_off_the_contract_is_refused(change):
    with pytest.raises(ValidationError):
        read_study({**STUDY, **change})


NOT_MRI = {"task": "tumor", "outcome": "not_a_brain_mri", "label": None, "label_index": None,
           "display_en": "Not a brain MRI slice", "display_ru": "Не похоже на срез МРТ мозга",
           "probabilities": {"glioma": 0.02, "meningioma": 0.03, "notumor": 0.94, "pituitary": 0.01},
           "ood": {"flag": True, "score": 1.5, "reasons": ["unusual for the tumor/teacher:lite0 detector"]},
           "screening": None, "model": {"role": "student", "name": "tumor/student:convnet1", "arch": "convnet1",
                                        "version": "v1"},
           "input": example(PredictResponse)["input"], "timing_ms": example(PredictResponse)["timing_ms"]}


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_an_image_that_is_not_mri_gets_no_conclusion(lang):
    """Say first that it is not a brain MRI slice; no label, no probability chart."""
    c = read_prediction(NOT_MRI)
    assert not c.diagnosis and c.label == "" and c.ood and c.screening is None
    text = conclusion_text(c, lang)
    first = text.splitlines()[0]
    assert first.startswith("⚠️") and ("not look like a brain MRI slice" if lang == "en" else "не похоже") in first
    assert "unusual for the tumor/teacher:lite0 detector" in first
    for word in ("Conclusion", "Вывод:", "No tumor", "Нет опухоли", "█", "94"):
        assert word not in text
    assert "tumor/student:convnet1 (v1)" in text
    # A label beside a refusal is not read as a diagnosis.
    assert not read_prediction({**NOT_MRI, "label": "notumor", "label_index": 2}).diagnosis


WRONG_TASK = {**NOT_MRI, "task": "dementia", "outcome": "wrong_task", "suited_task": "tumor",
              "display_en": "Not the kind of brain MRI slice the dementia task reads (it looks like one for the "
                            "brain tumor task)",
              "probabilities": {"NonDemented": 0.97, "VeryMildDemented": 0.02, "MildDemented": 0.006,
                                "ModerateDemented": 0.004},
              "ood": {"flag": True, "score": 310.5, "reasons": ["like the brain MRI slices of the tumor task"]}}


@pytest.mark.parametrize("lang, first", [
    ("en", "⚠️ <b>This looks like a brain MRI slice, but not the kind the Dementia task reads</b> (like the brain "
           "MRI slices of the tumor task). It looks like one for the Brain tumor task: choose it with /task and "
           "send the slice again. No conclusion is given."),
    ("ru", "⚠️ <b>Похоже на срез МРТ мозга, но не того вида, который читает задача «Деменция»</b> (like the brain "
           "MRI slices of the tumor task). Он похож на срезы для задачи «Опухоль мозга»: выберите её командой "
           "/task и пришлите срез снова. Вывода нет."),
])
def test_a_slice_of_another_task_is_told_apart_from_a_non_mri_image(lang, first):
    """A tumour slice sent with task=dementia is a brain MRI, not the kind this task reads."""
    c = read_prediction(WRONG_TASK)
    assert not c.diagnosis and c.label == "" and (c.outcome, c.suited_task) == ("wrong_task", "tumor")
    text = conclusion_text(c, lang)
    assert text.splitlines()[0] == first
    for word in ("Conclusion", "Вывод:", "Non-demented", "Деменции нет", "█", "%", "97"):
        assert word not in text
    # not the not-a-brain-MRI words
    assert "does not look like a brain MRI" not in text and "не похоже на срез" not in text.lower()
    flagged = [study_slice(i, 0.006, used=False, outcome="wrong_task", suited_task="tumor", label=None,
                           label_index=None) for i in range(2)]
    study = read_study({**STUDY, "model": NOT_MRI["model"], "slice_model": NOT_MRI["model"], "n_used": 0,
                        "excluded": [0, 1], "subject": WRONG_TASK, "slices": flagged})
    assert not study.diagnosis and study.key_slice is None and study.excluded == (0, 1)
    assert conclusion_text(study, "en", study=True).startswith(
        "⚠️ <b>The 2 images look like brain MRI slices, but not the kind the Dementia task reads</b>")


def test_a_study_says_which_slices_were_left_out():
    slices = [study_slice(0, 0.2), study_slice(1, 0.9, used=False, outcome="not_a_brain_mri"),
              study_slice(2, 0.5)]
    subject = {**STUDY["subject"], "ood": {"flag": False, "score": -3.0, "reasons": []}}
    body = {**STUDY, "n_slices": 3, "n_used": 2, "excluded": [1], "subject": subject, "slices": slices}
    c = read_study(body)
    assert c.diagnosis and c.excluded == (1,) and c.key_slice == 2, "never the heatmaps of a left-out slice"
    lines = conclusion_text(c, "en", study=True).splitlines()
    assert lines[0] == "Study of 3 slices. Conclusion: <b>Mild dementia</b>"
    assert lines[1] == ("⚠️ 1 of 3 images did not look like the brain MRI slices this task reads and were left "
                        "out of the conclusion: no. 2.")
    assert "не учитывались в выводе: № 2" in conclusion_text(c, "ru", study=True)
    by_mil = {**body, "aggregation": {"method": "attention_mil", "attention": [0.3, 0.0, 0.7]}}
    assert read_study(by_mil).key_slice == 2
    none = {**body, "n_used": 0, "excluded": [0, 1, 2],
            "subject": {**NOT_MRI, "task": "dementia", "probabilities": subject["probabilities"]}}
    c = read_study(none)
    assert not c.diagnosis and c.key_slice is None
    text = conclusion_text(c, "en", study=True)
    assert text.startswith("⚠️ <b>None of the 3 images looks like a brain MRI slice</b>")
    assert "Conclusion:" not in text and "█" not in text


TUMOR_ANSWER = {**example(PredictResponse), "label": "notumor", "label_index": 2, "display_en": "No tumor",
                "display_ru": "Опухоль не выявлена",
                "probabilities": {"glioma": 0.02, "meningioma": 0.03, "notumor": 0.9, "pituitary": 0.05}}


def test_chart_and_label_name_a_class_alike():
    """The class names come from GET /models (the task registry), so the label and its bar agree."""
    from diseaseid.tasks import get_task

    task = get_task("tumor")
    models = {"tasks": [{"name": "tumor", "classes": [
        {"name": c, "display_en": task.display(i, "en"), "display_ru": task.display(i, "ru")}
        for i, c in enumerate(task.classes)]}]}
    names = parse_class_names(models)["tumor"]
    c = read_prediction(TUMOR_ANSWER, class_names=names)
    ru = conclusion_text(c, "ru")
    assert "Вывод: <b>Опухоль не выявлена</b>" in ru and "Опухоль не выявлена █" in ru and "Нет опухоли" not in ru
    assert "Pituitary tumor ░" in conclusion_text(c, "en")
    # Without the names (GET /models unreachable) the chart falls back to the class names as served.
    assert "notumor    █" in conclusion_text(read_prediction(TUMOR_ANSWER), "en")


@pytest.mark.parametrize("body, unexpected", [
    (TUMOR_ANSWER, False),
    (flat(TUMOR_ANSWER), True),  # the flat shape old explain workers kept a prediction in: refused, not guessed at
])
def test_the_client_reads_answers_with_the_shared_model(body, unexpected):
    with one_answer_server(body) as url:
        if unexpected:
            with pytest.raises(UnexpectedAnswer):
                _predict(url, 5)
        else:
            c = _predict(url, 5)
            assert (c.label, c.display_en, c.model_name, c.probabilities["notumor"]) == (
                "notumor", "No tumor", TUMOR_ANSWER["model"]["name"], 0.9)


def _predict(url: str, timeout: float):
    async def go():
        client = DiseaseIdClient(url, url, timeout_s=timeout)
        try:
            return await client.predict(Upload("a.jpg", b"\xff\xd8\xff"), "tumor")
        finally:
            await client.aclose()
    return asyncio.run(go())


def test_closed_port_is_unavailable():
    with pytest.raises(ServiceUnavailable) as info:
        _predict(f"http://127.0.0.1:{free_port()}", 5)
    assert not isinstance(info.value, ServiceTimeout)


def test_silent_server_times_out():
    """A server that accepts connections and never answers (hung): a timeout, told apart from an outage."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        with pytest.raises(ServiceTimeout):
            _predict(f"http://127.0.0.1:{server.getsockname()[1]}", 0.5)


def test_token_is_redacted_from_log_lines_and_tracebacks(capsys):
    import logging

    from services.common.logs import setup_logging

    token = "123456:SECRET-token"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO", [token])
        log = logging.getLogger("test.bot")
        log.info("GET https://api.telegram.org/bot%s/getMe", token)
        try:
            raise RuntimeError(f"failed https://api.telegram.org/file/bot{token}/photos/1.jpg")
        except RuntimeError:
            log.exception("download failed")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    err = capsys.readouterr().err
    assert token not in err and "SECRET" not in err
    assert err.count("<redacted>") == 2 and "RuntimeError" in err


def test_screening_answer_and_the_single_slice_caveat():
    screening = {"impaired_probability": 0.734, "impaired": True, "display_en": "Cognitive impairment suspected",
                 "display_ru": "Подозрение на когнитивное нарушение"}
    subject = {**STUDY["subject"], "screening": screening}
    one = read_prediction({**NOT_MRI, **subject, "task": "dementia"})
    text = conclusion_text(one, "en")
    assert "Screening: <b>Cognitive impairment suspected</b> (probability of impairment 73%)" in text
    assert "One slice is weak evidence" in text and "whole axial study" in text
    assert "Подозрение на когнитивное нарушение" in conclusion_text(one, "ru")
    study = read_study({**STUDY, "subject": subject})
    text = conclusion_text(study, "en", study=True)
    assert "probability of impairment 73%" in text and "One slice is weak evidence" not in text
    tumor = read_prediction({**NOT_MRI, **STUDY["subject"], "task": "tumor", "screening": None})
    assert "Screening" not in conclusion_text(tumor, "en")
