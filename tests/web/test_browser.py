"""The web page as a person uses it, in Chromium: a tumour slice, a DICOM slice and its DICOM results, a
dementia study, an image that is not an MRI, a file that is not an image, the Russian page, load time, /docs
offline. The answers on the page are compared with what the inference service itself says about the same
files."""
from __future__ import annotations

import re

import httpx
import pytest

from diseaseid.ood.images import text_on_black
from tests.helpers import png_bytes
from tests.services.conftest import FIXTURES
from tests.web.conftest import screenshot

GLIOMA = sorted((FIXTURES / "tumor" / "glioma").glob("*.jpg"))
# A subject whose top slice the OOD check leaves out (it looks unlike the detector's slices): the page must say so.
STUDY = sorted((FIXTURES / "dementia" / "VeryMildDemented").glob("VeryMildDemented-002_*.jpg"))


def service_answer(web_stack, files: list[tuple[str, bytes]], task: str) -> dict:
    """The inference service's own answer for the same upload (what the page must show)."""
    headers = {"X-API-Key": web_stack.api_key}
    if len(files) == 1:
        r = httpx.post(web_stack.inference.url + "/predict", headers=headers, data={"task": task},
                       files={"file": files[0]}, timeout=60)
    else:
        r = httpx.post(web_stack.inference.url + "/predict/study", headers=headers, data={"task": task},
                       files=[("files", f) for f in files], timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def diagnosed(web_stack, candidates: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    """The first file the tumour models diagnose (the shipped models change as they are retrained; which
    fixture slice the OOD check flags changes with them, and a refusal shows no chart)."""
    for name, data in candidates:
        if service_answer(web_stack, [(name, data)], "tumor")["outcome"] == "diagnosis":
            return name, data
    raise AssertionError("the tumour models diagnose none of the glioma fixture slices")


@pytest.fixture(scope="module")
def tumor_slice(web_stack):
    name, _ = diagnosed(web_stack, [(p.name, p.read_bytes()) for p in GLIOMA])
    return FIXTURES / "tumor" / "glioma" / name


def class_names(web_stack, task: str, lang: str) -> dict[str, str]:
    models = httpx.get(web_stack.inference.url + "/models", headers={"X-API-Key": web_stack.api_key}).json()
    info = next(t for t in models["tasks"] if t["name"] == task)
    return {c["name"]: c[f"display_{lang}"] for c in info["classes"]}


def expected_percent(p: float) -> str:
    value = round(p * 100)
    return ">99%" if value >= 100 else "<1%" if value <= 0 else f"{value}%"


def analyse(page, task: str, files) -> None:
    page.check(f"input[name=task][value={task}]")
    page.set_input_files("#files", files)
    page.click("#submit")


def bars(page) -> list[tuple[str, str]]:
    return [(row.locator(".name").inner_text(), row.locator(".pct").inner_text())
            for row in page.locator(".bars .bar").all()]


def wait_heatmaps(page) -> None:
    page.wait_for_selector("#maps img[data-method=lrp]", timeout=90_000)
    # Both pictures really loaded (a broken image has no natural width). Polled with evaluate: the page's
    # Content Security Policy forbids the eval that wait_for_function's polling uses.
    loaded = "() => Array.from(document.querySelectorAll('#maps img')).every(i => i.complete && i.naturalWidth > 0)"
    for _ in range(300):
        if page.evaluate(loaded):
            return
        page.wait_for_timeout(100)
    raise AssertionError("the heatmap images did not finish loading within 30 s")


def test_tumour_slice_conclusion_chart_then_heatmaps(tab, web_stack, tumor_slice):
    page = tab.page
    page.goto("/?lang=en")
    analyse(page, "tumor", str(tumor_slice))
    answer = service_answer(web_stack, [(tumor_slice.name, tumor_slice.read_bytes())], "tumor")
    assert answer["outcome"] == "diagnosis"
    page.wait_for_selector(".conclusion")
    assert page.inner_text(".conclusion") == f"Conclusion: {answer['display_en']}"
    names = class_names(web_stack, "tumor", "en")
    expected = sorted(answer["probabilities"].items(), key=lambda kv: kv[1], reverse=True)
    assert bars(page) == [(names[c], expected_percent(p)) for c, p in expected]
    shown = [pct for _, pct in bars(page)]
    assert "100%" not in shown and "0%" not in shown
    # The top bar is as wide as its probability (the chart is drawn to scale).
    width = page.eval_on_selector(".bar.top .fill", "e => e.getBoundingClientRect().width / "
                                                    "e.parentElement.getBoundingClientRect().width")
    assert width == pytest.approx(max(answer["probabilities"].values()), abs=0.01)
    model = answer["model"]
    assert page.inner_text(".model") == f"Model: {model['name']}, version {model['version']}"
    assert "not a medical device" in page.inner_text("#result")

    wait_heatmaps(page)
    captions = page.locator("#maps figcaption").all_inner_texts()
    assert captions[0].startswith("Grad-CAM") and answer["display_en"] in captions[0]
    assert captions[1].startswith("LRP")
    href = page.get_attribute("#download", "href")
    assert href.endswith("/panel.png") and page.is_visible("#download")
    panel = page.request.get(href)
    assert panel.status == 200 and panel.body().startswith(b"\x89PNG")
    # The services' key never reaches the browser: not in the page, not in any request it made.
    assert web_stack.api_key not in page.content()
    assert all(web_stack.api_key not in url for url in tab.requests)
    assert all(url.startswith(web_stack.web.url) for url in tab.requests)
    # A JPEG names no study: no DICOM result is offered, and the page says why.
    assert page.is_hidden("#dicom-sr") and page.is_hidden("#maps-dicom")
    assert page.inner_text("#sr-note").startswith("No DICOM result (SR) for JPEG or PNG files")
    screenshot(page, "tumor")


def test_a_dicom_slice_gives_its_answer_as_a_dicom_sr_in_its_study(tab, web_stack, tmp_path):
    """A DICOM slice: the SR downloaded from the page says what the page shows (finding, probability), in the
    study of the upload; the heatmaps come as DICOM too, in the same study."""
    import pydicom

    from tests.dicom_series import group_facts, groups, mr_series

    candidates = {p.name: mr_series([p]) for p in GLIOMA}  # each slice as a scanner's one-slice series
    name, data = diagnosed(web_stack, [(f"{n}.dcm", s.files[0]) for n, s in candidates.items()])
    series = candidates[name.removesuffix(".dcm")]
    upload = tmp_path / "IM0001.dcm"
    upload.write_bytes(data)
    page = tab.page
    page.goto("/?lang=en")
    with page.expect_response(lambda r: r.url.endswith("/api/analyse")) as analysed:
        analyse(page, "tumor", str(upload))
    shown = analysed.value.json()
    answer = service_answer(web_stack, [(upload.name, upload.read_bytes())], "tumor")
    assert answer["outcome"] == "diagnosis"
    page.wait_for_selector(".conclusion")
    assert page.inner_text(".conclusion") == f"Conclusion: {answer['display_en']}"
    assert page.is_visible("#download-sr") and page.is_hidden("#sr-note")
    assert page.inner_text("#download-sr") == "Download the result as DICOM (SR)"

    with page.expect_download() as download:
        page.click("#download-sr")
    assert download.value.suggested_filename == "diseaseid-sr.dcm"
    sr = pydicom.dcmread(download.value.path())
    assert sr.Modality == "SR" and sr.StudyInstanceUID == series.study_uid and sr.PatientID == series.patient_id
    assert sr.SeriesInstanceUID != series.series_uid
    facts = group_facts(groups(sr)[0])
    assert facts["finding"] == (f"tumor.{answer['label_index']}", answer["display_en"])
    probability = facts["numbers"]["122157"]
    assert probability == pytest.approx(answer["probabilities"][answer["label"]], abs=1e-12)
    top = next(row for row in shown["probabilities"] if row["top"])  # what the page drew
    assert top["share"] == round(probability, 4) and top["percent"] == expected_percent(probability)
    assert page.inner_text(".bar.top .pct") == expected_percent(probability)
    assert facts["sources"] == series.sop_uids and facts["version"] == answer["model"]["version"]

    # The heatmaps as DICOM: Secondary Capture images and the SR that references them, same study.
    wait_heatmaps(page)
    page.wait_for_selector("#maps-dicom a[data-name=sr]")
    assert page.locator("#maps-dicom a").evaluate_all("links => links.map(a => a.dataset.name)") == [
        "gradcam", "lrp", "panel", "sr"]
    with page.expect_download() as download:
        page.click("#maps-dicom a[data-name=gradcam]")
    gradcam = pydicom.dcmread(download.value.path())
    assert gradcam.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and gradcam.StudyInstanceUID == series.study_uid
    assert gradcam.PhotometricInterpretation == "RGB" and gradcam.ContentQualification == "RESEARCH"
    with page.expect_download() as download:
        page.click("#maps-dicom a[data-name=sr]")
    explained = pydicom.dcmread(download.value.path())
    evidence = {ref.ReferencedSOPInstanceUID for item in explained.CurrentRequestedProcedureEvidenceSequence
                for s in item.ReferencedSeriesSequence for ref in s.ReferencedSOPSequence}
    assert {gradcam.SOPInstanceUID, *series.sop_uids} <= evidence
    assert web_stack.api_key not in page.content()
    assert all(web_stack.api_key not in url for url in tab.requests)
    screenshot(page, "dicom")


def test_dementia_study_is_read_in_order_with_screening_and_key_slice(tab, web_stack):
    page = tab.page
    page.goto("/?lang=en")
    analyse(page, "dementia", [str(p) for p in reversed(STUDY)])  # chosen in the wrong order on purpose
    answer = service_answer(web_stack, [(p.name, p.read_bytes()) for p in STUDY], "dementia")
    page.wait_for_selector("#result:not([hidden])")
    subject = answer["subject"]
    assert subject["outcome"] == "diagnosis"
    assert page.inner_text(".conclusion") == f"Study of 3 slices. Conclusion: {subject['display_en']}"
    names = class_names(web_stack, "dementia", "en")
    expected = sorted(subject["probabilities"].items(), key=lambda kv: kv[1], reverse=True)
    assert bars(page) == [(names[c], expected_percent(p)) for c, p in expected]
    screening = subject["screening"]
    assert page.inner_text(".screening") == (f"Screening: {screening['display_en']} (probability of impairment "
                                             f"{expected_percent(screening['impaired_probability'])})")
    excluded = answer["excluded"]
    if excluded:
        assert (f"{len(excluded)} of 3 images did not look like brain MRI slices and were left out of the "
                f"conclusion: no. {', '.join(str(i + 1) for i in excluded)}.") in page.inner_text(".notes")
    page.click(".files summary")
    assert page.locator(".files li").all_inner_texts() == [  # lowest slice first, whatever the choice order
        p.name + (" (left out)" if i in excluded else "") for i, p in enumerate(STUDY)]
    wait_heatmaps(page)
    attention = answer["aggregation"]["attention"]
    used = [i for i in range(3) if i not in excluded]
    key = max(used, key=lambda i: attention[i])
    assert page.inner_text("#key-slice").startswith(f"Heatmaps of slice {key + 1} of 3 ({STUDY[key].name})")
    screenshot(page, "study")


def test_an_image_that_is_not_an_mri_is_refused_without_a_label(tab, web_stack, tmp_path):
    image = tmp_path / "scan-notes.png"
    image.write_bytes(png_bytes(text_on_black()))
    answer = service_answer(web_stack, [(image.name, image.read_bytes())], "tumor")
    assert answer["outcome"] == "not_a_brain_mri" and answer["label"] is None  # the service refuses it
    page = tab.page
    page.goto("/?lang=en")
    analyse(page, "tumor", str(image))
    page.wait_for_selector(".refusal")
    text = page.inner_text("body")
    assert answer["display_en"] in page.inner_text(".refusal-title")
    assert "does not look like an MRI slice of the brain" in page.inner_text(".refusal")
    for cls, display in class_names(web_stack, "tumor", "en").items():
        assert display.lower() not in text.lower() and cls not in text.lower(), display
    assert page.locator(".bars").count() == 0 and page.locator(".conclusion").count() == 0
    assert page.is_hidden("#heatmaps")
    screenshot(page, "refusal")


def test_a_file_that_is_not_an_image_gets_a_clear_error(tab, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("Patient seen on Monday; MRI to follow.\n")
    page = tab.page
    page.goto("/?lang=en")
    analyse(page, "tumor", str(notes))
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error") == ("“notes.txt” is not an image this tool can read. Upload MRI slices as "
                                         "JPEG, PNG or DICOM files (several at once, or one zip file of them).")
    assert page.is_hidden("#result")
    assert not re.search(r"Traceback|Exception|File \"", page.inner_text("body"))


def test_russian_page(tab, web_stack, tumor_slice):
    page = tab.page
    page.goto("/?lang=ru")
    assert page.get_attribute("html", "lang") == "ru"
    assert page.inner_text("#submit") == "Анализировать"
    assert "не медицинское изделие" in page.inner_text("#notice")
    analyse(page, "tumor", str(tumor_slice))
    answer = service_answer(web_stack, [(tumor_slice.name, tumor_slice.read_bytes())], "tumor")
    page.wait_for_selector(".conclusion")
    assert page.inner_text(".conclusion") == f"Вывод: {answer['display_ru']}"
    names = class_names(web_stack, "tumor", "ru")
    assert [name for name, _ in bars(page)] == [
        names[c] for c, _ in sorted(answer["probabilities"].items(), key=lambda kv: kv[1], reverse=True)]
    wait_heatmaps(page)
    assert page.locator("#maps figcaption").first.inner_text().startswith("Grad-CAM: области")
    assert page.inner_text("#download") == "Скачать панель (PNG)"
    assert page.inner_text("#sr-note").startswith("Для файлов JPEG и PNG результата в DICOM (SR) нет")
    screenshot(page, "ru")


def test_page_loads_in_under_a_second_from_loopback_only(tab):
    page = tab.page
    page.goto("/")
    timing = page.evaluate("""() => {
        const nav = performance.getEntriesByType('navigation')[0];
        return {load: nav.loadEventEnd - nav.startTime,
                resources: performance.getEntriesByType('resource').map(r => r.name)};
    }""")
    assert 0 < timing["load"] < 1000, timing
    # The page's own script, style and icon, all from its server.
    assert {r.rsplit("/", 1)[1] for r in timing["resources"]} >= {"app.js", "app.css"}
    assert page.inner_text("#submit") == "Analyse"  # English for a browser that asks for nothing else


def test_docs_render_offline_in_the_browser(tab):
    page = tab.page
    page.goto("/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "diseaseid web page" in page.inner_text(".swagger-ui .info .title")
    page.goto("/redoc")
    page.wait_for_selector("redoc h1, [role=main] h1, h1", timeout=30_000)
