"""One key cannot read another key's *finished* explain job, its JSON or any of its files, while the
owner can; with a real worker finishing the job first (the older test ran without one, so its 404s came from
files that did not exist yet). Real Redis, the API under uvicorn, one worker process."""
from __future__ import annotations

import numpy as np
import pytest

from tests.services.conftest import fixture_bytes
from tests.services.explain_stack import ExplainStack, wait_for_job

pytestmark = pytest.mark.slow

OWNER, OTHER = "tenant-owner-key-0001", "tenant-other-key-0002"
FILES = ("panel.png", "gradcam.png", "lrp.png", "gradcam.npy", "lrp.npy")


@pytest.fixture(scope="module")
def stack():
    # Results live 10 minutes here (4 s in the shared fast settings), so that they surely exist when read.
    stack = ExplainStack.start(DISEASEID_API_KEYS=f"{OWNER},{OTHER}", DISEASEID_EXPLAIN_TTL_S="600",
                               DISEASEID_EXPLAIN_PRELOAD="tumor/student")
    try:
        stack.ensure_worker()
        yield stack
    finally:
        stack.close()


def test_another_key_reads_nothing_of_a_finished_job(stack):
    image = fixture_bytes("tumor", "meningioma")
    with stack.client(OWNER) as owner, stack.client(OTHER) as other:
        job = owner.post("/explain", data={"task": "tumor", "model": "student"},
                         files={"file": ("s.jpg", image, "image/jpeg")}).json()
        view = wait_for_job(owner, job["job_id"], timeout=120)
        assert view["status"] == "finished", view
        refused = other.get(f"/explain/{job['job_id']}")
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
        assert set(refused.json()) == {"error"}  # no status, no result, no URLs
        for name in FILES:
            path = f"/explain/{job['job_id']}/{name}"
            r = other.get(path)
            assert r.status_code == 404, (name, r.status_code)
            assert r.json()["error"]["code"] == "not_found", (name, r.text)
            assert r.headers["content-type"].startswith("application/json")
            mine = owner.get(path)  # the file exists: the 404 above is a refusal, not a missing file
            assert mine.status_code == 200 and len(mine.content) > 1000, (name, mine.status_code)
            if name.endswith(".npy"):
                assert mine.content[:6] == b"\x93NUMPY"
            else:
                assert mine.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert owner.get(f"/explain/{job['job_id']}").json()["result"]["panel_url"].endswith("/panel.png")
        # Submitting the same image does not hand the other key the owner's job either.
        again = other.post("/explain", data={"task": "tumor", "model": "student"},
                           files={"file": ("s.jpg", image, "image/jpeg")}).json()
        assert again["job_id"] != job["job_id"] and not again["deduplicated"]
        assert np.isfinite(view["result"]["methods"]["lrp"]["max"])
