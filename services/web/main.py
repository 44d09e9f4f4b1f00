"""The web page's server: ``uvicorn services.web.main:app`` (``make up`` starts it on :8080).

A third thin client of the inference and explain services, like the Telegram bot: it holds no model and
imports no torch, and reaches the models over HTTP only (``INFERENCE_URL``, ``EXPLAIN_URL``, with the
operator's ``DISEASEID_API_KEY``, which never reaches a browser). Routes: ``GET /`` (the page), ``/static/*``
(its script, style and icon, from this package), ``POST /api/analyse``, ``GET /api/explain/{id}`` and its
pictures, ``POST /api/dicom/sr`` and ``GET /api/explain/{id}/dicom/*.dcm`` (DICOM results), ``/healthz``,
``/readyz``, ``/metrics``, and ``/docs`` with local assets. Who may use it: :mod:`services.web.access`.
Built by the services' one app builder (``services.common.app.build_app``).
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager, suppress
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import CollectorRegistry

from services.common.app import FORM_OVERHEAD, build_app
from services.common.metrics import HttpMetrics
from services.web.access import PageAccess, describe
from services.web.client import ServicesClient
from services.web.routers import api, health, page
from services.web.settings import WebSettings, get_settings

log = logging.getLogger("services.web")

HERE = Path(__file__).resolve().parent

DESCRIPTION = """The page's own JSON API, which its script calls: `POST /api/analyse` (a slice, a study, a zip
or a DICOM series) and the heatmap job behind it. Programs should call the inference and explain services
directly; this API answers in the page's words and language."""


async def _read_models(client: ServicesClient, tries: int = 120) -> None:
    """Read GET /models once the inference service answers, so the page lists its tasks (not only the ones it
    knows) and names every class in the chart."""
    for _ in range(tries):
        if await client.models():
            return
        await asyncio.sleep(1.0)


def create_app(settings: WebSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    client = ServicesClient(settings.inference_url, settings.explain_url, api_key=api_key,
                            timeout_s=settings.web_request_timeout_s)
    http_metrics = HttpMetrics(CollectorRegistry())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info(describe(settings.web_users, settings.web_allow_anonymous))
        log.info("web: inference at %s, explain at %s, %s", settings.inference_url, settings.explain_url,
                 "sending DISEASEID_API_KEY" if api_key else "without an API key (DISEASEID_API_KEY unset)")
        reader = asyncio.create_task(_read_models(client))
        try:
            yield
        finally:
            reader.cancel()
            with suppress(asyncio.CancelledError):
                await reader
            await client.aclose()

    app = build_app(
        name="web", title="diseaseid web page", version="1", description=DESCRIPTION, settings=settings,
        lifespan=lifespan, routers=(page.router, api.router, health.router), http_metrics=http_metrics,
        state={"client": client, "templates": Jinja2Templates(directory=HERE / "templates"),
               "http_metrics": http_metrics},
        body_limits={path: settings.web_max_request_bytes + FORM_OVERHEAD for path in ("/api/analyse",
                                                                                        "/api/dicom/sr")},
        api_key_auth=False,
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    # Outermost: nobody reaches a route, or sends a body, before the page's access rule lets them.
    app.add_middleware(PageAccess, users=settings.web_users, allow_anonymous=settings.web_allow_anonymous)
    return app


app = create_app()
