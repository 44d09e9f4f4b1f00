"""/explain of a DICOM slice, results as DICOM: the heatmaps and panel as Secondary Capture images and an SR
referencing them, built from the finished job of a real worker, checked against the job's JSON result."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image
from rq.job import Job

from services.common.dicom_results import split_multipart
from tests.dicom_series import (
    dciodvfy_errors,
    fixture_slices,
    group_facts,
    groups,
    mr_series,
    read,
)
from tests.services.explain_stack import ExplainStack, wait_for_job

SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture(scope="module")
def stack():
    # Results kept 300 s, not the stack's 4: a busy machine takes longer than that between the job's end and
    # the last request for its files.
    stack = ExplainStack.start(DISEASEID_EXPLAIN_PRELOAD="tumor/student", DISEASEID_EXPLAIN_TTL_S="300")
    try:
        stack.ensure_worker()
        yield stack
    finally:
        stack.close()


def test_explain_results_as_dicom(stack):
    series = mr_series(fixture_slices("tumor", "meningioma", 1))
    with stack.client() as client:
        r = client.post("/explain", data={"task": "tumor"},
                        files={"file": ("s.dcm", series.files[0], "application/dicom")})
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        early = client.get(f"/explain/{job_id}/dicom")
        view = wait_for_job(client, job_id)
        assert view["status"] == "finished", view
        r = client.get(f"/explain/{job_id}/dicom")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith('multipart/related; type="application/dicom"')
        parts = split_multipart(r.content, r.headers["content-type"])
        again = client.get(f"/explain/{job_id}/dicom")  # built once, then served as kept
        assert split_multipart(again.content, again.headers["content-type"]) == parts
        # The job's JSON says where they are, as it links panel.png: the URLs give the same bytes.
        links = view["result"]["dicom"]
        root = view["result"]["panel_url"].removesuffix("/panel.png")
        assert links == {"url": f"{root}/dicom", "objects": {n: f"{root}/dicom/{n}.dcm"
                                                             for n in ("gradcam", "lrp", "panel", "sr")}}
        singles = {n: client.get(url) for n, url in links["objects"].items()}
        everything = client.get(links["url"])
        assert split_multipart(everything.content, everything.headers["content-type"]) == parts
        # The upload's header lives in the job itself (as long as the job, however long it waited), sealed.
        with stack.redis_client() as redis:
            assert not redis.exists(f"diseaseid:explain:result:{job_id}:source.dcm")
            sealed = Job.fetch(job_id, connection=redis).meta["dicom_source"]
        assert len(sealed) > 200 and series.patient_name.encode() not in sealed
        unknown = client.get(f"/explain/{job_id}/dicom/mask.dcm")
        other_key = stack.client(key=None).get(f"/explain/{job_id}/dicom")
        pngs = [client.get(f"/explain/{job_id}/{n}.png").content for n in ("gradcam", "lrp", "panel")]
    assert early.status_code in (200, 404)  # 404 while the job runs
    assert unknown.status_code == 404 and other_key.status_code == 401
    assert [s.status_code for s in singles.values()] == [200] * 4
    assert [s.content for s in singles.values()] == parts

    *images, sr = (read(p) for p in parts)
    result = view["result"]
    assert [im.SOPClassUID for im in images] == [SC_CLASS] * 3 and sr.Modality == "SR"
    source = read(series.files[0])
    for ds in (*images, sr):
        assert ds.StudyInstanceUID == series.study_uid and ds.PatientID == series.patient_id
        assert ds.PatientName == series.patient_name and ds.ContentQualification == "RESEARCH"
        assert ds.SeriesInstanceUID != series.series_uid and ds.SOPInstanceUID not in series.sop_uids
    assert len({im.SeriesInstanceUID for im in images}) == 1 and len({im.SOPInstanceUID for im in images}) == 3
    assert images[0].PatientOrientation == ["L", "P"]  # rows run to the patient's left, columns to posterior
    for image, png in zip(images, pngs, strict=True):  # the very pictures of the PNG results, as RGB
        assert image.SamplesPerPixel == 3 and image.PhotometricInterpretation == "RGB"
        assert np.array_equal(image.pixel_array, np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))
    # The SR: the explained prediction, the model, the slice as source, the three images as evidence.
    (group,) = groups(sr)
    facts = group_facts(group)
    prediction = result["prediction"]
    assert facts["algorithm"] == result["model"]["name"] and facts["version"] == result["model"]["version"]
    if prediction["outcome"] == "diagnosis":
        assert facts["finding"][1] == prediction["display_en"]
        assert facts["numbers"]["122157"] == pytest.approx(prediction["probabilities"][prediction["label"]],
                                                           abs=1e-12)
    assert facts["sources"] == [source.SOPInstanceUID]
    evidence = {ref.ReferencedSOPInstanceUID for item in sr.CurrentRequestedProcedureEvidenceSequence
                for s in item.ReferencedSeriesSequence for ref in s.ReferencedSOPSequence}
    assert {im.SOPInstanceUID for im in images} | {source.SOPInstanceUID} == evidence
    if shutil.which("dciodvfy"):
        for part in parts:
            assert dciodvfy_errors(part) == []


def test_a_jpeg_jobs_dicom_results_are_not_acceptable(stack):
    jpeg = fixture_slices("tumor", "glioma", 1)[0].read_bytes()
    with stack.client() as client:
        job_id = client.post("/explain", data={"task": "tumor"},
                             files={"file": ("s.jpg", jpeg, "image/jpeg")}).json()["job_id"]
        view = wait_for_job(client, job_id)
        assert view["status"] == "finished"
        r = client.get(f"/explain/{job_id}/dicom")
    assert r.status_code == 406 and r.json()["error"]["code"] == "not_acceptable"
    assert "dicom" in view["result"] and view["result"]["dicom"] is None  # no DICOM results to link
