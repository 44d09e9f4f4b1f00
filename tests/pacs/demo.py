"""A DICOM series through the running stack, end to end: what docs/dicom.md ("Through `make up`") shows.

    make up                                   # Orthanc and the PACS bridge start where Orthanc is installed
    .venv/bin/python -m tests.pacs.demo       # another terminal, once the services are ready
    .venv/bin/python -m tests.pacs.demo --screenshots   # also (re)draw docs/img/pacs-*.png

It builds a small MR series from the committed tumour fixtures (tests/dicom_series.py: a scanner's tags, 12-bit
greys), stores it into Orthanc by STOW-RS as a scanner or a viewer would, and waits until the bridge has
stored our results into the same study: for each slice the prediction SR (series 9101) and, for a slice with
a diagnosis, the heatmap images (9102) and the explanation SR (9103), all sent by the bridge in one STOW-RS
per slice (so a slice's SR arriving means its heatmaps are there). Then it reads every result back, checks
study, patient and references, prints what each SR says and how long each step took, runs ``dciodvfy`` on
every object where dicom3tools is installed, and exits non-zero if anything is missing or wrong.

With ``--screenshots``, Chromium (Debian's, driven by Playwright, as tests/web does) draws Orthanc Explorer's
page of the study (our series beside the MR images) and Orthanc's own rendering of our heatmap panel into
docs/img/pacs-study.png and docs/img/pacs-panel.png. Nothing here needs an API key: it talks to Orthanc only.
"""
from __future__ import annotations

import argparse
import io
import shutil
import sys
import time
from pathlib import Path

import httpx
import pydicom

from services.pacs.orthanc import OrthancClient
from tests.dicom_series import FIXTURES, dciodvfy_errors, group_facts, groups, mr_series

REPO = Path(__file__).resolve().parents[2]
IMG = REPO / "docs" / "img"
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"


def stow(orthanc: str, files: list[bytes]) -> None:
    """Store by DICOMweb STOW-RS (the bridge's client: it checks that no instance failed)."""
    client = OrthancClient(orthanc, timeout_s=60)
    try:
        client.stow(files)
    finally:
        client.close()


def study_series(orthanc: str, study_uid: str) -> list[dict]:
    """Every series of the study with its main tags and instance ids (Orthanc's REST find, expanded)."""
    r = httpx.post(f"{orthanc}/tools/find", timeout=30,
                   json={"Level": "Series", "Query": {"StudyInstanceUID": study_uid}, "Expand": True})
    r.raise_for_status()
    return r.json()


def ours(series_list: list[dict], number: str | None = None) -> list[dict]:
    """Our result series (Series Number 9101-9103), or the one numbered ``number``."""
    numbers = (number,) if number else ("9101", "9102", "9103")
    return [s for s in series_list if s["MainDicomTags"].get("SeriesNumber") in numbers]


def wait_for_results(orthanc: str, series, timeout: float, poll: float = 0.25, quiet: float = 3.0
                     ) -> tuple[list[str], dict]:
    """Poll the study until every slice has its prediction SR and nothing new arrived for ``quiet`` seconds (the
    bridge stores a slice's SR and heatmaps in one STOW-RS, which Orthanc indexes one instance at a time): our
    instances' ids and the times (s after the upload) at which the first and the last of them appeared."""
    start = time.monotonic()
    seen: dict[str, float] = {}
    while True:
        now = time.monotonic() - start
        found = study_series(orthanc, series.study_uid)
        for s in ours(found):
            for i in s["Instances"]:
                seen.setdefault(i, now)
        predicted = sum(len(s["Instances"]) for s in ours(found, "9101"))
        if predicted >= len(series.files) and now - max(seen.values()) >= quiet:
            return list(seen), {"first": min(seen.values()), "last": max(seen.values())}
        if now > timeout:
            raise SystemExit(f"after {timeout:.0f} s the study has {predicted} of {len(series.files)} prediction "
                             "SRs: is the bridge running (make up prints 'orthanc ...'), are the services ready?")
        time.sleep(poll)


def check(orthanc: str, series, instances: list[str]) -> list[pydicom.Dataset]:
    objects = []
    for i in instances:
        ds = pydicom.dcmread(io.BytesIO(httpx.get(f"{orthanc}/instances/{i}/file", timeout=30).content))
        assert ds.StudyInstanceUID == series.study_uid, "a result outside the source's study"
        assert ds.PatientID == series.patient_id and ds.ContentQualification == "RESEARCH"
        assert ds.SeriesInstanceUID != series.series_uid and ds.SOPInstanceUID not in series.sop_uids
        objects.append(ds)
    srs = [o for o in objects if o.SOPClassUID == SR_CLASS]
    for sr in sorted(srs, key=lambda o: (int(o.SeriesNumber), o.InstanceNumber)):
        facts = group_facts(groups(sr)[0])
        assert set(facts["sources"]) <= set(series.sop_uids) and facts["sources"], "SR without its source"
        finding = facts["finding"][1] if facts["finding"] else f"no diagnosis ({facts['outcome']})"
        p = facts["numbers"].get("122157")
        print(f"  SR series {sr.SeriesNumber} instance {sr.InstanceNumber}: {finding}"
              + (f", probability {p:.4f}" if p is not None else "") + f"; {sr.ManufacturerModelName} "
              f"version {sr.SoftwareVersions}")
    images = [o for o in objects if o.SOPClassUID == SC_CLASS]
    print(f"  heatmap images (series 9102): {len(images)} "
          f"({', '.join(f'{o.Rows}x{o.Columns} {o.PhotometricInterpretation}' for o in images)})")
    explained = [o for o in srs if int(o.SeriesNumber) == 9103]
    assert len(images) == 3 * len(explained), "each explanation SR comes with its three images"
    return objects


def screenshots(orthanc: str, study_uid: str, chromium: str) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    study_id = next(x["ID"] for x in httpx.post(f"{orthanc}/tools/lookup", content=study_uid, timeout=10).json()
                    if x["Type"] == "Study")
    (heatmaps,) = ours(study_series(orthanc, study_uid), "9102")
    panel_id = next(i["ID"] for i in httpx.get(f"{orthanc}/series/{heatmaps['ID']}/instances", timeout=10).json()
                    if i["MainDicomTags"].get("InstanceNumber") == "3")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 640})
            page.goto(f"{orthanc}/app/explorer.html#study?uuid={study_id}")
            n = len(study_series(orthanc, study_uid))  # the MR series and ours
            page.wait_for_function(f"document.querySelectorAll('#list-series li').length >= {n}", timeout=30_000)
            shot = page.screenshot(full_page=True)
            Image.open(io.BytesIO(shot)).convert("RGB").quantize(256).save(IMG / "pacs-study.png", optimize=True)
            # Orthanc's own rendering of our panel (a Secondary Capture image it stored), as a viewer gets it.
            page.set_viewport_size({"width": 1100, "height": 420})
            page.goto(f"{orthanc}/instances/{panel_id}/preview")
            page.wait_for_selector("img")
            shot = page.locator("img").screenshot()
            Image.open(io.BytesIO(shot)).convert("RGB").quantize(256).save(IMG / "pacs-panel.png", optimize=True)
        finally:
            browser.close()
    print(f"  screenshots: {IMG / 'pacs-study.png'}, {IMG / 'pacs-panel.png'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.pacs.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--orthanc", default="http://127.0.0.1:8042", help="Orthanc's URL, as make up prints it")
    parser.add_argument("--fixtures", nargs="+", default=["Tr-gl_0530.jpg", "Tr-gl_0861.jpg"],
                        help="tumour fixture slices (tests/fixtures/tumor/glioma) that make the series, in order")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--screenshots", action="store_true", help="(re)draw docs/img/pacs-*.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args(argv)
    orthanc = args.orthanc.rstrip("/")
    print(f"Orthanc {httpx.get(f'{orthanc}/system', timeout=10).json()['Version']} at {orthanc}")

    series = mr_series([FIXTURES / "tumor" / "glioma" / name for name in args.fixtures], patient_id="PID-DEMO",
                       patient_name="Demo^Patient", description="T1 AX BRAIN")
    t0 = time.monotonic()
    stow(orthanc, series.files)
    uploaded = time.monotonic() - t0
    print(f"stored {len(series.files)} MR slices by STOW-RS in {uploaded:.2f} s; study {series.study_uid}")
    instances, times = wait_for_results(orthanc, series, args.timeout)
    print(f"results in the same study: first {times['first']:.1f} s, all {times['last']:.1f} s after the upload "
          f"({len(instances)} objects)")
    objects = check(orthanc, series, instances)
    if shutil.which("dciodvfy"):
        for ds in objects:
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            errors = dciodvfy_errors(buf.getvalue())
            assert not errors, (ds.SOPClassUID, errors)
        print(f"  dciodvfy: no errors in {len(objects)} objects")
    else:
        print("  dciodvfy not installed (apt-get install dicom3tools): objects not validated")
    if args.screenshots:
        screenshots(orthanc, series.study_uid, args.chromium)
    return 0


if __name__ == "__main__":
    sys.exit(main())
