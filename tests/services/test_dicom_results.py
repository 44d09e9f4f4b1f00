"""DICOM out: the SR (TID 1500) of /predict and /predict/study, checked against the JSON answer for the same
input, and every object we write checked by dciodvfy (dicom3tools) where it is installed."""
from __future__ import annotations

import shutil

import pytest

from services.common import dicom_results as dr
from tests.dicom_series import (
    dciodvfy_errors,
    fixture_slices,
    group_facts,
    groups,
    mr_series,
    read,
)

needs_dciodvfy = pytest.mark.skipif(
    shutil.which("dciodvfy") is None,
    reason="dciodvfy not installed: apt-get install dicom3tools (.ci/setup.d/orthanc.sh)")
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR Storage
OUTCOME_CODES = {"diagnosis": "diagnosis", "not_a_brain_mri": "not-brain-mri", "wrong_task": "wrong-task"}


@pytest.fixture(scope="module")
def tumour():
    return mr_series(fixture_slices("tumor", "glioma", 2))


@pytest.fixture(scope="module")
def dementia():
    return mr_series(fixture_slices("dementia", "MildDemented", 3, "MildDemented-002"), patient_id="PID-DEM-1",
                     description="T1 AX")


def post(client, series, *, task="tumor", study=False, headers=None, data=None, files=None):
    if study:
        parts = files or [("files", (f"s{i}.dcm", f, "application/dicom")) for i, f in enumerate(series.files)]
        return client.post("/predict/study", data={"task": task, **(data or {})}, files=parts, headers=headers)
    one = files or {"file": ("s.dcm", series.files[0], "application/dicom")}
    return client.post("/predict", data={"task": task, **(data or {})}, files=one, headers=headers)


def check_common(sr, series, model: dict, sent: int | None = None) -> None:
    """Same study and patient as the input, new series and instance, the model named, research use stated."""
    source = read(series.files[0])
    assert sr.SOPClassUID == SR_CLASS and sr.Modality == "SR"
    assert sr.StudyInstanceUID == series.study_uid
    assert sr.SeriesInstanceUID != series.series_uid and sr.SOPInstanceUID not in series.sop_uids
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "AccessionNumber", "StudyID", "ReferringPhysicianName"):
        assert sr[keyword].value == source[keyword].value, keyword
    assert sr.ContentQualification == "RESEARCH" and "RESEARCH USE ONLY" in sr.SeriesDescription
    assert sr.Manufacturer == "diseaseid" and sr.ManufacturerModelName == model["name"]
    assert sr.SoftwareVersions == model["version"]
    evidence = {ref.ReferencedSOPInstanceUID for series_ in sr.CurrentRequestedProcedureEvidenceSequence
                for s in series_.ReferencedSeriesSequence for ref in s.ReferencedSOPSequence}
    assert set(series.sop_uids[:sent]) <= evidence


def check_finding(facts: dict, answer: dict, model: dict) -> None:
    assert facts["algorithm"] == model["name"] and facts["version"] == model["version"]
    assert facts["outcome"] == OUTCOME_CODES[answer["outcome"]]
    if answer["label"] is None:
        assert facts["finding"] is None and "122157" not in facts["numbers"]
        return
    index = answer["label_index"]
    assert facts["finding"] == (f"{answer.get('task', facts.get('task'))}.{index}", answer["display_en"])
    assert facts["numbers"]["122157"] == pytest.approx(answer["probabilities"][answer["label"]], abs=1e-12)


def test_predict_sr_says_what_the_json_says(inference_client, tumour):
    answer = post(inference_client, tumour).json()
    r = post(inference_client, tumour, headers={"Accept": "application/dicom"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/dicom"
    sr = read(r.content)
    check_common(sr, tumour, answer["model"], sent=1)
    (group,) = groups(sr)
    facts = group_facts(group)
    check_finding(facts, answer, answer["model"])
    assert facts["sources"] == [tumour.sop_uids[0]]
    for i, (label, p) in enumerate(answer["probabilities"].items()):
        assert label in ("glioma", "meningioma", "notumor", "pituitary")
        assert facts["numbers"][f"p.tumor.{['glioma', 'meningioma', 'notumor', 'pituitary'].index(label)}"] \
            == pytest.approx(p, abs=1e-12), i
    # The form field asks the same; the same input and model give the same UIDs (a PACS keeps one copy).
    again = read(post(inference_client, tumour, data={"format": "dicom"}).content)
    assert (again.SeriesInstanceUID, again.SOPInstanceUID) == (sr.SeriesInstanceUID, sr.SOPInstanceUID)
    other = read(post(inference_client, tumour, data={"format": "dicom", "model": "teacher"}).content)
    assert other.SOPInstanceUID != sr.SOPInstanceUID


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json, application/dicom;q=0.5",
                                    "application/dicom;q=0"])
def test_json_stays_the_default(inference_client, tumour, accept):
    r = post(inference_client, tumour, headers={"Accept": accept} if accept else None)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["input"]["format"] == "dicom"


def test_non_dicom_input_asking_for_dicom_is_refused(inference_client):
    jpeg = fixture_slices("tumor", "glioma", 1)[0].read_bytes()
    for kwargs in ({"headers": {"Accept": "application/dicom"}}, {"data": {"format": "dicom"}}):
        r = post(inference_client, None, files={"file": ("s.jpg", jpeg, "image/jpeg")}, **kwargs)
        assert r.status_code == 406, r.text
        assert r.json()["error"]["code"] == "not_acceptable" and "DICOM input" in r.json()["error"]["message"]
    r = post(inference_client, None, files={"file": ("s.jpg", jpeg, "image/jpeg")}, data={"format": "xml"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_form_value"


def test_study_sr_has_the_subject_and_each_slice(inference_client, dementia):
    answer = post(inference_client, dementia, task="dementia", study=True).json()
    r = post(inference_client, dementia, task="dementia", study=True, headers={"Accept": "application/dicom"})
    assert r.status_code == 200, r.text
    sr = read(r.content)
    check_common(sr, dementia, answer["model"])
    subject, *slices = groups(sr)
    facts = group_facts(subject)
    check_finding(facts, {**answer["subject"], "task": "dementia"}, answer["model"])
    used = [dementia.sop_uids[s["index"]] for s in answer["slices"] if s["used"]]
    assert facts["sources"] == (used or dementia.sop_uids)
    if answer["subject"]["screening"]:
        assert facts["numbers"]["p-impaired"] == pytest.approx(
            answer["subject"]["screening"]["impaired_probability"], abs=1e-12)
    assert len(slices) == len(answer["slices"])
    for group, slice_answer, sop in zip(slices, answer["slices"], dementia.sop_uids, strict=True):
        f = group_facts(group)
        check_finding(f, {**slice_answer, "task": "dementia"}, answer["model"])
        assert f["sources"] == [sop]
        if answer["aggregation"]["attention"] is not None:
            assert f["numbers"]["attention"] == pytest.approx(
                answer["aggregation"]["attention"][slice_answer["index"]], abs=1e-6)


def test_study_of_jpegs_asking_for_dicom_is_refused(inference_client):
    paths = fixture_slices("dementia", "MildDemented", 2, "MildDemented-002")
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
    r = post(inference_client, None, task="dementia", study=True, files=files, data={"format": "dicom"})
    assert r.status_code == 406 and r.json()["error"]["code"] == "not_acceptable"


def _finding(label="glioma", outcome="diagnosis", suited_task=None):
    return dr.Finding("tumor", outcome, label if outcome == "diagnosis" else None,
                      {"glioma": 0.7, "meningioma": 0.2, "notumor": 0.06, "pituitary": 0.04},
                      suited_task=suited_task)


ALGORITHM = dr.Algorithm("tumor/student:lite0_stage5", "8261307019b1", ("task=tumor",))


def test_no_diagnosis_sr_says_so_and_names_no_class(tumour):
    sr = dr.prediction_sr([read(tumour.files[0])], _finding(outcome="not_a_brain_mri"), ALGORITHM)
    (group,) = groups(sr)
    facts = group_facts(group)
    assert facts["finding"] is None and facts["outcome"] == "not-brain-mri"
    assert not any(k.startswith("p.") or k == "122157" for k in facts["numbers"])


def test_wrong_task_sr_has_its_own_code_and_names_the_suited_task(tumour):
    """Not the kind of MRI this task reads: its own outcome code (not the not-brain-MRI one), the task it looks
    like as a coded qualitative evaluation, no class and no probability."""
    from tests.dicom_series import concept, content_items

    sr = dr.prediction_sr([read(tumour.files[0])], _finding(outcome="wrong_task", suited_task="dementia"),
                          ALGORITHM)
    (group,) = groups(sr)
    facts = group_facts(group)
    assert facts["finding"] is None and facts["outcome"] == "wrong-task"
    assert not any(k.startswith("p.") or k == "122157" for k in facts["numbers"])
    codes = {concept(i): i.ConceptCodeSequence[0] for i in content_items(group) if i.ValueType == "CODE"}
    assert codes[("99DISEASEID", "outcome")].CodeMeaning.startswith("Brain MRI of a kind this task does not read")
    suited = codes[("99DISEASEID", "suited-task")]
    assert (suited.CodeValue, suited.CodingSchemeDesignator, suited.CodeMeaning) == ("task.dementia", "99DISEASEID",
                                                                                     "dementia")
    assert [s.CodingSchemeDesignator for s in sr.CodingSchemeIdentificationSequence] == ["99DISEASEID"]
    # Every outcome the models give has its own code; an unknown one is refused, never written as another.
    from diseaseid.outcomes import OUTCOMES

    assert len({dr.outcome_concept(o).value for o in OUTCOMES}) == len(OUTCOMES)
    with pytest.raises(dr.CannotWriteDicom, match="no DICOM code"):
        dr.prediction_sr([read(tumour.files[0])], _finding(outcome="maybe"), ALGORITHM)


def test_sources_that_cannot_carry_a_result_are_refused(tumour, dementia):
    missing = read(tumour.files[0])
    del missing.StudyInstanceUID
    with pytest.raises(dr.CannotWriteDicom, match="StudyInstanceUID"):
        dr.prediction_sr([missing], _finding(), ALGORITHM)
    with pytest.raises(dr.CannotWriteDicom, match="different studies"):
        dr.prediction_sr([read(tumour.files[0]), read(dementia.files[0])], _finding(), ALGORITHM)


def test_type2_attributes_absent_in_the_source_are_written_empty_not_invented(tumour):
    source = read(tumour.files[0])
    del source.PatientBirthDate, source.AccessionNumber
    sr = dr.prediction_sr([source], _finding(), ALGORITHM)
    assert sr.PatientBirthDate == "" and sr.AccessionNumber == ""
    assert sr.PatientID == tumour.patient_id


@needs_dciodvfy
def test_dciodvfy_finds_no_error_in_any_object_we_write(inference_client, tumour, dementia):
    import io

    import numpy as np
    from PIL import Image

    def png(w, h):
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
        return buf.getvalue()

    objects = {
        "predict": post(inference_client, tumour, data={"format": "dicom"}).content,
        "study": post(inference_client, dementia, task="dementia", study=True, data={"format": "dicom"}).content,
        "no-diagnosis": dr.dicom_bytes(dr.prediction_sr([read(tumour.files[0])],
                                                        _finding(outcome="not_a_brain_mri"), ALGORITHM)),
        "wrong-task": dr.dicom_bytes(dr.prediction_sr([read(tumour.files[0])],
                                                      _finding(outcome="wrong_task", suited_task="dementia"),
                                                      ALGORITHM)),
        **dr.explain_objects(read(tumour.files[0]), _finding(), ALGORITHM,
                             {"gradcam": png(224, 224), "lrp": png(224, 224), "panel": png(700, 260)},
                             target="glioma"),
    }
    for name, data in objects.items():
        assert read(data).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1", name
        assert dciodvfy_errors(data) == [], name
