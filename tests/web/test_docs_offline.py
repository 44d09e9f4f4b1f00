"""/docs and /redoc of every app work without internet: the pages name no outside URL, and each asset they
name is served by the app itself (from the fastapi-offline wheel), with its real content."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from services.common.docs import ASSETS_PATH, REDOC_CDN_LOGO, assets_dir


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "spec-url") and value:
                self.links.append(value)


def links_of(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.links


def _inference_app():
    from services.inference.main import create_app
    from services.inference.settings import InferenceSettings

    return create_app(InferenceSettings())


def _explain_app():
    from services.explain.api.main import create_app
    from services.explain.settings import ExplainSettings

    return create_app(ExplainSettings(redis_url="redis://127.0.0.1:1/0"))  # never connected by these routes


def _web_app():
    from services.web.main import create_app
    from services.web.settings import WebSettings

    return create_app(WebSettings(web_allow_anonymous=True))  # TestClient comes from "testclient"


APPS = {"inference": _inference_app, "explain": _explain_app, "web": _web_app}
# The first bytes each asset must start with (a 200 with an HTML error page would not do).
EXPECTED = {"swagger-ui-bundle.js": "SwaggerUIBundle", "swagger-ui.css": ".swagger-ui",
            "redoc.standalone.js": "Redoc", "favicon.png": None}


@pytest.fixture(scope="module", params=sorted(APPS))
def client(request):
    # No `with`: the lifespan (model loading, Redis) is not needed to serve the docs.
    return TestClient(APPS[request.param](), base_url="http://127.0.0.1")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_name_only_local_assets_and_each_answers(client, page):
    response = client.get(page)
    assert response.status_code == 200
    html = response.text
    # The browser is told too: nothing but this server may be loaded or called from the page.
    csp = response.headers["content-security-policy"]
    for directive in ("default-src 'self'", "img-src 'self' data: blob:", "connect-src 'self'"):
        assert directive in csp
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.I), "an outside URL in " + page
    assert "fonts.googleapis" not in html and "cdn.jsdelivr" not in html
    links = links_of(html)
    assets = [link for link in links if link.startswith(ASSETS_PATH + "/")]
    # Swagger UI: its bundle, its CSS, the icon; ReDoc: its bundle and the icon.
    assert len(assets) == (3 if page == "/docs" else 2), links
    for link in assets:
        name = link.rsplit("/", 1)[1]
        served = client.get(link)
        assert served.status_code == 200, link
        original = (assets_dir() / name).read_bytes()
        if name == "redoc.standalone.js":
            # The one outside URL ReDoc would fetch (its vendor's logo) is gone, nothing else changed.
            assert REDOC_CDN_LOGO in original and REDOC_CDN_LOGO not in served.content
            assert served.content == original.replace(REDOC_CDN_LOGO, b"data:,")
        else:
            assert served.content == original
        marker = EXPECTED[name]
        if marker is None:
            assert served.content.startswith(b"\x89PNG")
        else:
            assert marker in served.text[:200_000], name
    if page == "/docs":
        assert '"validatorUrl": null' in html  # no badge image from the online validator
        assert "url: '/openapi.json'" in html
        assert client.get("/openapi.json").status_code == 200
    else:
        assert 'spec-url="/openapi.json"' in html


def test_fastapi_default_cdn_pages_are_gone(client):
    # Only one /docs route: ours (FastAPI's own would shadow it or be shadowed, depending on order).
    docs_routes = [r for r in client.app.routes if getattr(r, "path", None) in ("/docs", "/redoc")]
    assert len(docs_routes) == 2
    assert client.app.docs_url is None and client.app.redoc_url is None
