"""The PACS bridge against a real Orthanc (Debian's, with DICOMweb) and the real inference service, explain
API and worker: series stored by STOW-RS come back with our SR and heatmaps in their study; what the SR says
equals the JSON answer for the same files; every object we write passes dciodvfy; a refused series is failed
and does not block the others; Orthanc and the bridge restart without a series handled twice or lost.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest

from services.common.dicom_results import multipart_related
from services.pacs.orthanc import _stack_order
from services.pacs.state import BridgeState
from tests.dicom_series import (
    dciodvfy_errors,
    fixture_slices,
    group_facts,
    groups,
    mr_series,
    read,
)
from tests.pacs.orthanc_server import OrthancServer, missing
from tests.services.conftest import REPO, run_server
from tests.services.explain_stack import API_KEY, ExplainStack

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
ROUTES = [{"task": "dementia", "description": "(?i)dementia"}, {"task": "tumor"}]


# -- without services ---------------------------------------------------------------------------------------
def test_stack_order_follows_the_slice_normal_then_instance_number():
    axial = "1\\0\\0\\0\\1\\0"
    tags = [{"ImageOrientationPatient": axial, "ImagePositionPatient": f"0\\0\\{z}", "InstanceNumber": str(n)}
            for n, z in ((1, 10.0), (2, -5.0), (3, 0.0))]
    assert sorted(range(3), key=lambda i: _stack_order(tags[i], i)) == [1, 2, 0]  # lowest (feet) first
    bare = [{"InstanceNumber": "3"}, {"InstanceNumber": "1"}, {}]
    assert sorted(range(3), key=lambda i: _stack_order(bare[i], i)) == [2, 1, 0]


@pytest.mark.skipif(missing() is not None, reason=missing() or "")
def test_an_unreachable_service_holds_the_feed_without_failing_the_series(tmp_path):
    """Services down is no series' fault: the change stays unhandled (tried again), nothing is recorded as
    failed or done, and the feed does not move past it."""
    from services.pacs.bridge import Bridge as InProcessBridge
    from services.pacs.bridge import Retry
    from services.pacs.client import ServicesClient
    from services.pacs.orthanc import OrthancClient
    from services.pacs.settings import PacsSettings
    from tests.helpers import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    settings = PacsSettings(orthanc_url="", DISEASEID_DATA_DIR=str(tmp_path), poll_s=0.1)
    with OrthancServer() as orthanc:
        series = mr_series(fixture_slices("tumor", "glioma", 1))
        stow(orthanc, series.files)
        client = OrthancClient(orthanc.url)
        deadline = time.monotonic() + 20
        while not any(c["ChangeType"] == "StableSeries" for c in client.changes(0)[0]):
            assert time.monotonic() < deadline, "Orthanc never called the series stable"
            time.sleep(0.2)
        stable = next(c for c in client.changes(0)[0] if c["ChangeType"] == "StableSeries")
        state = BridgeState.load(settings.state_path)
        bridge = InProcessBridge(settings, client, ServicesClient(closed, closed, timeout_s=2), state)
        bridge.check_orthanc()
        for _ in range(2):
            with pytest.raises(Retry):
                bridge.run_once()
        saved = BridgeState.load(settings.state_path)
        assert saved.last_seq == stable["Seq"] - 1  # everything before it handled, it not
        assert stable["ID"] not in saved.series or saved.series[stable["ID"]].status == "pending"
        client.close()


def test_state_file_survives_and_is_replaced_whole(tmp_path):
    state = BridgeState.load(tmp_path / "pacs" / "state.json")
    assert state.last_seq == 0 and state.series == {}
    state.last_seq = 41
    state.record("s1", status="done", instances=3, runs=1, outputs=["2.25.1"])
    state.save()
    again = BridgeState.load(tmp_path / "pacs" / "state.json")
    assert again.last_seq == 41 and again.series["s1"].outputs == ["2.25.1"] and again.series["s1"].runs == 1
    assert [p.name for p in (tmp_path / "pacs").iterdir()] == ["state.json"]  # no temporary file left


# -- with a real Orthanc and services -------------------------------------------------------------------------

class Bridge:
    """``python -m services.pacs`` as a process, restartable."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.log = Path(tempfile.mkstemp(prefix="pacs-bridge-", suffix=".log")[1])

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.pacs"], cwd=REPO,
                                         env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def stow(orthanc: OrthancServer, files: list[bytes]) -> None:
    body, content_type = multipart_related(files)
    r = httpx.post(f"{orthanc.url}/dicom-web/studies", content=body, timeout=30,
                   headers={"Content-Type": content_type, "Accept": "application/dicom+json"})
    assert r.status_code == 200, r.text


def orthanc_series_id(orthanc: OrthancServer, series_uid: str) -> str:
    found = httpx.post(f"{orthanc.url}/tools/lookup", content=series_uid, timeout=10).json()
    return next(f["ID"] for f in found if f["Type"] == "Series")


def study_objects(orthanc: OrthancServer, study_uid: str) -> list[pydicom.Dataset]:
    """Every instance of the study, read back from Orthanc (REST: find, then each file)."""
    found = httpx.post(f"{orthanc.url}/tools/find", timeout=30,
                       json={"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}}).json()
    return [read(httpx.get(f"{orthanc.url}/instances/{i}/file", timeout=30).content) for i in found]


def wait_for(predicate, what: str, timeout: float, bridge: Bridge):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout:.0f} s; bridge log:\n{bridge.text()[-4000:]}")
        time.sleep(0.2)


def handled(state_path: Path, *series_ids: str) -> BridgeState | None:
    try:
        state = BridgeState.load(state_path)
    except (ValueError, OSError):
        return None
    done = all(s in state.series and state.series[s].status in ("done", "failed", "skipped") for s in series_ids)
    return state if done else None


@pytest.fixture(scope="module")
def stack():
    """Orthanc, the inference service, the explain API and a worker, started side by side."""
    if missing() is not None:
        pytest.skip(missing())
    with ExitStack() as exit_stack, ThreadPoolExecutor(3) as pool:
        explain = pool.submit(ExplainStack.start, DISEASEID_EXPLAIN_PRELOAD="tumor/student,dementia/student")
        inference = pool.submit(lambda: exit_stack.enter_context(
            run_server("services.inference.main:app", {"DISEASEID_API_KEYS": ""}, ready_path="/readyz",
                       timeout=240)))  # a loaded machine starts three model-loading processes at once
        orthanc = exit_stack.enter_context(OrthancServer())
        explain_stack = explain.result()
        exit_stack.callback(explain_stack.close)
        worker = pool.submit(explain_stack.start_worker, 240)
        server = inference.result()
        worker.result()
        yield orthanc, server, explain_stack


def json_predict(server, data: bytes, task: str = "tumor") -> dict:
    r = httpx.post(f"{server.url}/predict", data={"task": task}, timeout=60,
                   files={"file": ("s.dcm", data, "application/dicom")})
    assert r.status_code == 200, r.text
    return r.json()


def json_study(server, files: list[bytes], task: str = "dementia") -> dict:
    r = httpx.post(f"{server.url}/predict/study", data={"task": task}, timeout=60,
                   files=[("files", (f"{i}.dcm", f, "application/dicom")) for i, f in enumerate(files)])
    assert r.status_code == 200, r.text
    return r.json()


def check_same_study(obj: pydicom.Dataset, series) -> None:
    assert obj.StudyInstanceUID == series.study_uid and obj.PatientID == series.patient_id
    assert obj.PatientName == series.patient_name and obj.ContentQualification == "RESEARCH"
    assert obj.SeriesInstanceUID != series.series_uid


def check_answer(sr: pydicom.Dataset, answer: dict, task: str, source_uids: list[str]) -> None:
    facts = group_facts(groups(sr)[0])
    assert facts["algorithm"] == answer["model"]["name"] and facts["version"] == answer["model"]["version"]
    conclusion = answer.get("subject", answer)
    if conclusion["outcome"] == "diagnosis":
        assert facts["finding"] == (f"{task}.{conclusion['label_index']}", conclusion["display_en"])
        assert facts["numbers"]["122157"] == pytest.approx(conclusion["probabilities"][conclusion["label"]],
                                                           abs=1e-12)
    else:
        assert facts["finding"] is None
        codes = {"not_a_brain_mri": "not-brain-mri", "wrong_task": "wrong-task"}
        assert facts["outcome"] == codes[conclusion["outcome"]]
    assert facts["sources"] == source_uids


@pytest.mark.skipif(missing() is not None, reason=missing() or "")
def test_series_come_back_with_results_and_survive_restarts(stack):
    orthanc, inference, explain = stack
    data_dir = Path(tempfile.mkdtemp(prefix="pacs-data-"))
    state_path = data_dir / "pacs" / "state.json"
    bridge = Bridge({"DISEASEID_PACS_ORTHANC_URL": orthanc.url, "INFERENCE_URL": inference.url,
                     "EXPLAIN_URL": explain.api.url, "DISEASEID_API_KEY": API_KEY,
                     "DISEASEID_DATA_DIR": str(data_dir), "DISEASEID_PACS_POLL_S": "0.3",
                     "DISEASEID_PACS_ROUTES": json.dumps(ROUTES), "DISEASEID_PACS_MAX_SLICES": "8",
                     "DISEASEID_TORCH_THREADS": "1"})
    try:
        tumour = mr_series(fixture_slices("tumor", "glioma", 2))
        dementia = mr_series(fixture_slices("dementia", "MildDemented", 3, "MildDemented-002"),
                             patient_id="PID-DEM-2", description="DEMENTIA T1 AX")
        # A dementia series the API refuses (slices of two sizes: 422 mixed_sizes), stored first.
        bad = mr_series(fixture_slices("dementia", "MildDemented", 2, "MildDemented-003"), patient_id="PID-BAD",
                        description="dementia t1")
        small = read(bad.files[1])
        small.set_pixel_data(small.pixel_array[::2, ::2].copy(), "MONOCHROME2", 12)
        buf = io.BytesIO()
        small.save_as(buf, enforce_file_format=True)
        bad.files[1] = buf.getvalue()
        ct = mr_series(fixture_slices("tumor", "glioma", 1), patient_id="PID-CT", modality="CT")

        bridge.start()
        for series in (bad, ct, tumour, dementia):
            stow(orthanc, series.files)
        ids = {name: orthanc_series_id(orthanc, s.series_uid)
               for name, s in (("bad", bad), ("ct", ct), ("tumour", tumour), ("dementia", dementia))}
        state = wait_for(lambda: handled(state_path, *ids.values()), "the four series handled", 90, bridge)
        assert state.series[ids["bad"]].status == "failed" and "mixed_sizes" in state.series[ids["bad"]].reason
        assert state.series[ids["ct"]].status == "skipped"
        assert state.series[ids["tumour"]].status == "done" and state.series[ids["dementia"]].status == "done"
        assert not [o for o in study_objects(orthanc, bad.study_uid) if o.Modality in ("SR", "OT")]

        # Tumour: one SR per slice, each saying what /predict says as JSON; explanations of diagnosed slices.
        objects = [o for o in study_objects(orthanc, tumour.study_uid) if o.SOPInstanceUID not in tumour.sop_uids]
        predict_srs = [o for o in objects if o.SOPClassUID == SR_CLASS and o.SeriesNumber == 9101]
        explain_srs = [o for o in objects if o.SOPClassUID == SR_CLASS and o.SeriesNumber == 9103]
        images = [o for o in objects if o.SOPClassUID == SC_CLASS]
        answers = [json_predict(inference, f) for f in tumour.files]
        assert len(predict_srs) == 2 and len({o.SeriesInstanceUID for o in predict_srs}) == 1
        for sop, answer in zip(tumour.sop_uids, answers, strict=True):
            (sr,) = [o for o in predict_srs if group_facts(groups(o)[0])["sources"] == [sop]]
            check_answer(sr, answer, "tumor", [sop])
            check_same_study(sr, tumour)
        diagnosed = sum(a["outcome"] == "diagnosis" for a in answers)
        assert len(explain_srs) == diagnosed and len(images) == 3 * diagnosed
        for sr in explain_srs:
            evidence = {ref.ReferencedSOPInstanceUID for item in sr.CurrentRequestedProcedureEvidenceSequence
                        for s in item.ReferencedSeriesSequence for ref in s.ReferencedSOPSequence}
            assert {im.SOPInstanceUID for im in images} & evidence and len(evidence) == 4  # 3 images + slice
        for image in images:
            check_same_study(image, tumour)
            assert image.pixel_array.shape[2] == 3 and np.ptp(image.pixel_array) > 0

        # Dementia: one SR for the series as a study, the slice that weighed most explained.
        answer = json_study(inference, dementia.files)
        objects = [o for o in study_objects(orthanc, dementia.study_uid) if o.SOPInstanceUID not in dementia.sop_uids]
        (study_sr,) = [o for o in objects if o.SOPClassUID == SR_CLASS and o.SeriesNumber == 9101]
        used = [dementia.sop_uids[s["index"]] for s in answer["slices"] if s["used"]]
        check_answer(study_sr, answer, "dementia", used or dementia.sop_uids)
        check_same_study(study_sr, dementia)
        attention = answer["aggregation"]["attention"]
        best = dementia.sop_uids[int(np.argmax(attention))] if attention else dementia.sop_uids[1]
        explained = [o for o in objects if o.SOPClassUID == SR_CLASS and o.SeriesNumber == 9103]
        for sr in explained:
            assert group_facts(groups(sr)[0])["sources"] == [best]

        if shutil.which("dciodvfy"):
            for obj in [*predict_srs, *explain_srs, *images, study_sr, *explained]:
                buf = io.BytesIO()
                obj.save_as(buf, enforce_file_format=True)
                assert dciodvfy_errors(buf.getvalue()) == [], obj.SOPClassUID

        counts = {s.study_uid: len(study_objects(orthanc, s.study_uid)) for s in (tumour, dementia)}

        # Orthanc restarts under the running bridge; a series stored afterwards is handled.
        orthanc.stop()
        time.sleep(1.0)
        orthanc.start()
        after_orthanc = mr_series(fixture_slices("tumor", "glioma", 1), patient_id="PID-AFTER-1")
        stow(orthanc, after_orthanc.files)
        id_after_orthanc = orthanc_series_id(orthanc, after_orthanc.series_uid)
        wait_for(lambda: handled(state_path, id_after_orthanc), "a series after Orthanc's restart", 60, bridge)

        # The bridge restarts; a series stored while it was down is handled when it is back.
        bridge.stop()
        assert bridge.proc.returncode == 0
        after_bridge = mr_series(fixture_slices("tumor", "meningioma", 1), patient_id="PID-AFTER-2")
        stow(orthanc, after_bridge.files)
        bridge.start()
        id_after_bridge = orthanc_series_id(orthanc, after_bridge.series_uid)
        state = wait_for(lambda: handled(state_path, id_after_bridge), "a series after the bridge's restart",
                         60, bridge)
        time.sleep(1.5)  # a few more polls: anything it would handle again, it would have by now
        state = BridgeState.load(state_path)
        for name in ("tumour", "dementia"):
            assert state.series[ids[name]].runs == 1, name
        for sid in (id_after_orthanc, id_after_bridge):
            assert state.series[sid].status == "done" and state.series[sid].runs == 1
            assert state.series[sid].outputs
        assert {s.study_uid: len(study_objects(orthanc, s.study_uid)) for s in (tumour, dementia)} == counts
        assert bridge.text().count(f"series {ids['tumour']}: 2 slices") == 1
    finally:
        bridge.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        bridge.log.unlink(missing_ok=True)
