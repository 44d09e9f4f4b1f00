"""Building a service's FastAPI app: the wiring every HTTP service shares, in one place.

A service's ``main.py`` creates its own resources (settings, models or queue, metrics registry) and hands them
to :func:`build_app`, which adds the rest the same way for every service::

    logging, the auth log line at start-up   API-key digests on the app (services.common.auth)
    the JSON error handlers                  the decode gate (one per app, services.common.uploads)
    the routers                              HTTP metrics, then the body limit (outermost)
    /docs and /redoc with local assets       (services.common.docs: they work without internet)

Resources reach routes through ``Annotated`` dependencies (``SettingsDep``, ...; see each service's
``deps.py`` and :func:`app_state`), never by a route reading ``request.app.state`` itself.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request

from services.common.auth import configure_auth, log_auth_mode
from services.common.body_limit import BodyLimitMiddleware
from services.common.docs import install_offline_docs
from services.common.errors import ServiceError, install_error_handlers
from services.common.logs import configure_logging
from services.common.metrics import HttpMetrics, HttpMetricsMiddleware
from services.common.settings import ServiceSettings
from services.common.uploads import DecodeGate, keep_uploads_in_memory

# Room for the multipart framing and the small form fields around the files.
FORM_OVERHEAD = 64 * 1024
# Bodies of the routes that take no upload.
SMALL_BODY = 64 * 1024

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def build_app(*, name: str, title: str, version: str, description: str, settings: ServiceSettings,
              routers: Iterable[APIRouter], http_metrics: HttpMetrics, state: Mapping[str, Any],
              body_limits: Mapping[str, int], default_body_limit: int = SMALL_BODY,
              lifespan: Lifespan | None = None,
              translate_errors: Mapping[type[Exception], Callable[[Exception], ServiceError]] | None = None,
              api_key_auth: bool = True,
              ) -> FastAPI:
    """A FastAPI app with the shared wiring; ``state`` becomes ``app.state`` (besides ``settings`` and
    ``decode_gate``), ``body_limits`` maps upload paths to their largest body, ``lifespan`` runs inside the
    shared one (after the auth line), and ``translate_errors`` maps a library's exceptions to service errors
    (e.g. Redis down -> 503 ``queue_unavailable``). ``api_key_auth=False``: an app that checks no
    ``X-API-Key`` (the web page, which has its own access rule) neither loads keys nor logs an auth mode."""
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def shared_lifespan(app: FastAPI) -> AsyncIterator[None]:
        if api_key_auth:
            log_auth_mode(settings.api_keys, name)
        if lifespan is None:
            yield
        else:
            async with lifespan(app):
                yield

    # FastAPI's own /docs and /redoc load their scripts from a CDN: ours serve them from a package.
    app = FastAPI(title=title, version=version, description=description, lifespan=shared_lifespan,
                  docs_url=None, redoc_url=None)
    install_offline_docs(app)
    app.state.settings = settings
    app.state.decode_gate = DecodeGate(settings)
    for key, value in state.items():
        setattr(app.state, key, value)
    configure_auth(app, settings.api_keys if api_key_auth else ())
    install_error_handlers(app, translate_errors)
    for router in routers:
        app.include_router(router)
    app.add_middleware(HttpMetricsMiddleware, metrics=http_metrics)
    # Outermost: oversized bodies are refused before anything else reads them.
    app.add_middleware(BodyLimitMiddleware, default=default_body_limit, per_path=body_limits)
    keep_uploads_in_memory(max(body_limits.values(), default=default_body_limit))
    return app


def app_state(name: str) -> Any:
    """A dependency giving ``request.app.state.<name>``: ``Annotated[T, app_state("name")]``.

    Async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, a thread hop per request
    for nothing but an attribute lookup."""
    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    dependency.__name__ = f"get_{name}"
    return Depends(dependency)


# Every app built here has one (build_app makes it), so the alias is shared rather than in each deps.py.
DecodeGateDep = Annotated[DecodeGate, app_state("decode_gate")]


def base_url(request: Request) -> str:
    """The service's own root URL as the client reached it (results link back to it)."""
    return str(request.base_url).rstrip("/")

