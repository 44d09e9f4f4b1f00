"""The web page against the real stack, in a real browser.

One stack per session, all on loopback: Redis, the explain API and one worker (tests/services/explain_stack.py),
the inference service, all with an API key, and the page's server holding that key. One Chromium per session
(Debian's, driven by Playwright from PyPI; Playwright's own browser download is not reachable here), a fresh
context per test. Every context cuts the network off: a request to anything but 127.0.0.1 is aborted and
recorded, and the test fails if the page tried one.

Screenshots for the docs are written to docs/img/web-*.png only when DISEASEID_SCREENSHOTS=1 (CI leaves the
tree clean).
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.services.conftest import REPO, ServerProcess, run_server

CHROMIUM = Path(os.environ.get("DISEASEID_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = os.environ.get("DISEASEID_SCREENSHOTS") == "1"
IMG = REPO / "docs" / "img"
LOOPBACK = re.compile(r"^(https?|wss?)://127\.0\.0\.1(:\d+)?/")
OUTSIDE = re.compile(r"^(?!(https?|wss?)://127\.0\.0\.1(:\d+)?/)(https?|wss?|ftp)://")


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright not installed: pip install the dev extra (playwright)"
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)) and not shutil.which(str(CHROMIUM)):
        return f"Chromium not installed: {CHROMIUM} is missing (apt-get install chromium; .ci/setup.d/chromium.sh)"
    return None


@dataclass
class WebStack:
    web: ServerProcess
    inference: ServerProcess
    explain_url: str
    api_key: str


@pytest.fixture(scope="session")
def web_stack() -> Iterator[WebStack]:
    """The page's server in front of the real inference and explain services (with an API key)."""
    from tests.services.explain_stack import API_KEY, ExplainStack

    with ExitStack() as stack:
        explain = ExplainStack.start(DISEASEID_EXPLAIN_TTL_S="300", DISEASEID_EXPLAIN_WARMUP="false",
                                     DISEASEID_EXPLAIN_PRELOAD="tumor/student,dementia/student")
        stack.callback(explain.close)
        with ThreadPoolExecutor(1) as pool:
            worker = pool.submit(explain.start_worker)  # loads its models while the inference service loads
            inference = stack.enter_context(run_server(
                "services.inference.main:app", {"DISEASEID_API_KEYS": API_KEY}, ready_path="/readyz"))
            worker.result()
        web = stack.enter_context(run_server("services.web.main:app", {
            "INFERENCE_URL": inference.url, "EXPLAIN_URL": explain.api.url, "DISEASEID_API_KEY": API_KEY,
            "DISEASEID_WEB_USERS": "", "DISEASEID_WEB_ALLOW_ANONYMOUS": "false",
            "DISEASEID_WEB_EXPLAIN_WAIT_S": "5"}, ready_path="/readyz"))
        yield WebStack(web, inference, explain.api.url, API_KEY)


@pytest.fixture(scope="session")
def browser():
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Tab:
    """A page in its own browser context, with every request it made."""

    page: object
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


@pytest.fixture
def tab(browser, web_stack) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1100, "height": 900}, base_url=web_stack.web.url)
    record = Tab(page=None)
    context.on("request", lambda request: record.requests.append(request.url))

    def cut_off(route) -> None:
        record.blocked.append(route.request.url)
        route.abort("internetdisconnected")

    context.route(OUTSIDE, cut_off)
    record.page = context.new_page()
    record.page.set_default_timeout(60_000)
    try:
        yield record
        # The network was cut off: the page must not even have tried to leave the machine.
        assert record.blocked == [], f"requests outside loopback: {record.blocked}"
        outside = [u for u in record.requests if not (LOOPBACK.match(u) or u.startswith(("data:", "blob:")))]
        assert outside == [], outside
    finally:
        context.close()


def screenshot(page, name: str) -> None:
    """docs/img/web-<name>.png, only when DISEASEID_SCREENSHOTS=1; a 256-colour PNG, as the docs' other
    pictures (about 40% of the size, the page still legible)."""
    if SCREENSHOTS:
        import io

        from PIL import Image

        shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
        shot.quantize(256).save(IMG / f"web-{name}.png", optimize=True)
