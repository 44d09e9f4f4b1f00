"""``/docs`` (Swagger UI) and ``/redoc`` that work without internet: their scripts, styles and icon are served
by the app itself from the ``fastapi-offline`` wheel instead of FastAPI's default CDN links.

A hospital network often has no route to a CDN, and FastAPI's default pages then stay blank. The wheel ships
the Swagger UI bundle (JS and CSS), ReDoc's standalone bundle and a favicon; we only use its files (not its
``FastAPIOffline`` class), mounted at ``/docs/assets``. ReDoc's Google Fonts are left out and Swagger UI's
online spec validator is switched off (``validatorUrl: null``), so neither page asks anything of the outside.
:func:`services.common.app.build_app` calls :func:`install_offline_docs` for every app it builds.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, Response

ASSETS_PATH = "/docs/assets"
# Said to the browser as well: the docs pages may load and call nothing but their own server (inline script
# and style: both pages start so).
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
            "base-uri 'none'; frame-ancestors 'none'")
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def assets_dir() -> Path:
    """The folder of the ``fastapi_offline`` package's bundled files (found without importing the package)."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fastapi-offline is not installed: it provides the /docs assets (services extra)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "static"
    missing = [name for name in ASSET_FILES if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(f"fastapi-offline's static folder lacks {', '.join(missing)}")
    return folder


# ReDoc's sidebar credit shows its vendor's logo from a CDN whatever the options say. We serve the bundle with
# that one URL replaced by an empty data URL: the image fails at once and ReDoc's own onerror hides it, so the
# page never even tries to leave the machine.
REDOC_BUNDLE = "redoc.standalone.js"
REDOC_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


@lru_cache(maxsize=1)
def redoc_bundle() -> bytes:
    return (assets_dir() / REDOC_BUNDLE).read_bytes().replace(REDOC_CDN_LOGO, b"data:,")


def _confined(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


def install_offline_docs(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Add Swagger UI at ``docs_url`` and ReDoc at ``redoc_url`` with local assets; ``app`` must have been made
    with ``docs_url=None, redoc_url=None`` so that FastAPI's CDN-backed pages are not there too."""
    async def redoc_js() -> Response:
        return Response(redoc_bundle(), media_type="text/javascript",
                         headers={"Cache-Control": "public, max-age=86400"})

    # Before the mount: the first route that matches answers.
    app.add_api_route(f"{ASSETS_PATH}/{REDOC_BUNDLE}", redoc_js, methods=["GET"], include_in_schema=False)
    app.mount(ASSETS_PATH, StaticFiles(directory=assets_dir()), name="docs-assets")
    oauth2_redirect = f"{docs_url}/oauth2-redirect"

    def urls(request: Request) -> tuple[str, str]:
        # Behind a proxy that strips a prefix, links must carry it (as FastAPI's own pages do).
        root = request.scope.get("root_path", "").rstrip("/")
        return root + (app.openapi_url or "/openapi.json"), root + ASSETS_PATH

    async def swagger_ui(request: Request) -> HTMLResponse:
        openapi, assets = urls(request)
        return _confined(get_swagger_ui_html(
            openapi_url=openapi, title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js", swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png", oauth2_redirect_url=oauth2_redirect,
            swagger_ui_parameters={"validatorUrl": None}))

    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        openapi, assets = urls(request)
        return _confined(get_redoc_html(openapi_url=openapi, title=f"{app.title} - ReDoc",
                                        redoc_js_url=f"{assets}/redoc.standalone.js",
                                        redoc_favicon_url=f"{assets}/favicon.png", with_google_fonts=False))

    app.add_api_route(docs_url, swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route(oauth2_redirect, swagger_ui_redirect, methods=["GET"], include_in_schema=False)
    app.add_api_route(redoc_url, redoc, methods=["GET"], include_in_schema=False)
