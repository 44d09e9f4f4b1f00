"""The API examples of the README (curl) and docs/api.md (Python), run as written against real services over
loopback.

The bash block runs in ``bash`` and the Python block in a fresh interpreter, both from the repository root,
with only the ports changed (``127.0.0.1:8000`` / ``8001`` -> the test servers') and ``DISEASEID_API_KEY`` set
to one of the keys the services were started with, as the README tells a reader to do. What they print and
write is then checked against what the services answer for the same inputs.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import httpx
import pytest

from tests.services.conftest import REPO, TEST_KEYS
from tests.services.explain_stack import ExplainStack

pytestmark = pytest.mark.slow

README = REPO / "README.md"
API_DOC = REPO / "docs" / "api.md"
PORTS = {"http://127.0.0.1:8000": "inference", "http://127.0.0.1:8001": "explain"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def section(path, heading: str) -> str:
    """The text under ``## heading`` of a markdown file, up to the next ``## ``."""
    return path.read_text().split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def example_blocks(language: str) -> list[str]:
    """The fenced ``language`` blocks of the examples: the README's "API examples" (bash), docs/api.md's
    "Python"."""
    text = section(README, "API examples") if language == "bash" else section(API_DOC, "Python")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def json_documents(text: str) -> list[dict]:
    """Consecutive JSON documents, as ``curl -s`` prints them (no separator)."""
    decoder, docs, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        doc, i = decoder.raw_decode(text, i)
        docs.append(doc)
    return docs


KEY = TEST_KEYS[0]


@pytest.fixture(scope="module")
def services(inference_server_auth):
    """The inference service (the session's, keys on) and an explain stack (Redis, API, one worker) that
    accepts the same key, with the production wait and a TTL that outlives the test."""
    stack = ExplainStack.start(DISEASEID_API_KEYS=KEY, DISEASEID_EXPLAIN_TTL_S="300",
                               DISEASEID_EXPLAIN_MAX_WAIT_S="30")
    try:
        stack.ensure_worker()
        yield {"inference": inference_server_auth.url, "explain": stack.api.url}
    finally:
        stack.close()


def localise(code: str, services: dict) -> str:
    for readme_url, name in PORTS.items():
        assert readme_url in code, f"the README examples no longer use {readme_url}"
        code = code.replace(readme_url, services[name])
    return code


def reference(services: dict, path: str, data: dict, files: list[tuple[str, str]]) -> dict:
    """The same request, sent by the test itself."""
    opened = [(field, (os.path.basename(p), (REPO / p).read_bytes(), "image/jpeg")) for field, p in files]
    r = httpx.post(services["inference"] + path, data=data, files=opened, headers={"X-API-Key": KEY},
                   timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_readme_has_the_examples():
    assert len(example_blocks("bash")) == 1 and len(example_blocks("python")) == 1


def test_the_docs_state_the_status_of_an_image_over_the_pixel_cap_and_how_to_run_the_python():
    """The README once said 415 for images over 4096 x 4096; the service answers 422 image_too_large, and
    docs/api.md, which now lists the errors, must say so."""
    from services.common.errors import ImageTooLarge, UnsupportedMediaType
    from services.common.settings import SERVICE_MAX_PIXELS

    statuses = " ".join(section(API_DOC, "Errors").split("never a 500 for bad input:", 1)[1].split())
    assert (ImageTooLarge.status, ImageTooLarge.code) == (422, "image_too_large") and UnsupportedMediaType.status == 415
    assert SERVICE_MAX_PIXELS == 4096 * 4096
    too_large = re.search(r"422 \(([^)]*)\)", statuses).group(1)
    assert "`image_too_large` for an image over 4096 x 4096" in too_large
    assert "pixel" not in re.search(r"415 \(([^)]*)\)", statuses).group(1)
    # The example imports httpx, which only the project's virtual environment is sure to have.
    before_python = section(API_DOC, "Python").split("```python", 1)[0]
    assert "httpx" in before_python and "`.venv/bin/python" in before_python


def test_bash_examples(services, tmp_path):
    (code,) = example_blocks("bash")
    env = {**os.environ, "DISEASEID_API_KEY": KEY, "TMPDIR": str(tmp_path)}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", localise(code, services)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    single, study, job = json_documents(done.stdout)

    slice_path = "tests/fixtures/tumor/glioma/Tr-gl_0082.jpg"
    assert single["task"] == "tumor" and single["outcome"] == "diagnosis" and single["label"] == "glioma"
    assert single["ood"]["flag"] is False and single["input"]["format"] == "jpeg"
    expected = reference(services, "/predict", {"task": "tumor"}, [("file", slice_path)])
    assert single["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)

    # One subject's three slices, in stack order (r08, r16, r24): the glob sorts them lowest first.
    subject = sorted(p.relative_to(REPO).as_posix()
                     for p in (REPO / "tests/fixtures/dementia/MildDemented").glob("MildDemented-002_*.jpg"))
    assert len(subject) == 3 and len(study["slices"]) == 3
    expected = reference(services, "/predict/study", {"task": "dementia"}, [("files", p) for p in subject])
    assert study["subject"]["probabilities"] == pytest.approx(expected["subject"]["probabilities"], abs=1e-6)
    assert [s["probabilities"] for s in study["slices"]] == [
        pytest.approx(s["probabilities"], abs=1e-6) for s in expected["slices"]]
    assert study["subject"]["label"] in ("NonDemented", "VeryMildDemented", "MildDemented", "ModerateDemented")

    assert job["status"] == "finished", job
    assert job["request"]["task"] == "tumor" and job["request"]["model"] == "teacher"
    result = job["result"]
    assert result["outcome"] == "diagnosis" and result["prediction"]["label"] == "glioma"
    assert result["panel_url"] == f"{services['explain']}/explain/{job['job_id']}/panel.png"
    panel = (tmp_path / "panel.png").read_bytes()
    assert panel.startswith(PNG_MAGIC)
    assert panel == httpx.get(result["panel_url"], headers={"X-API-Key": KEY}).content
    # Nothing was written into the repository.
    assert not (REPO / "panel.png").exists()


def test_python_example(services, tmp_path):
    (code,) = example_blocks("python")
    # Run the example, then hand its variables back to the test as JSON.
    report = ('\nimport json as _json\nprint("\\n@@" + _json.dumps({"answer": answer, "view": view, '
              '"panel_head": list(panel_png[:8]), "panel_size": len(panel_png)}))\n')
    env = {**os.environ, "DISEASEID_API_KEY": KEY}
    done = subprocess.run([sys.executable, "-c", localise(code, services) + report], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    printed, _, state = done.stdout.partition("\n@@")
    out = json.loads(state)
    answer, view = out["answer"], out["view"]
    assert printed.split()[:2] == ["diagnosis", "glioma"]
    assert answer["label"] == "glioma" and answer["model"]["role"] == "teacher" and not answer["ood"]["flag"]
    assert view["status"] == "finished" and view["result"]["prediction"]["label"] == "glioma"
    assert bytes(out["panel_head"]) == PNG_MAGIC and out["panel_size"] > 10_000
