"""The inference service app: ``uvicorn services.inference.main:app``.

Endpoints: ``POST /predict``, ``POST /predict/study``, ``GET /models``, ``/healthz``, ``/readyz``,
``/metrics``; OpenAPI docs at ``/docs``. Configuration comes from ``DISEASEID_*`` environment variables
(see :mod:`services.inference.settings` and :mod:`services.common.settings`).
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI

from services.common.auth import configure_auth, log_auth_mode
from services.common.body_limit import BodyLimitMiddleware
from services.common.errors import install_error_handlers
from services.common.logs import configure_logging
from services.common.metrics import HttpMetricsMiddleware
from services.common.uploads import DecodeGate, keep_uploads_in_memory
from services.inference.metrics import InferenceMetrics
from services.inference.routers import health, models, predict
from services.inference.settings import InferenceSettings
from services.inference.store import ModelStore

log = logging.getLogger("services.inference")

# Room for the multipart framing and the small form fields around one file.
FORM_OVERHEAD = 64 * 1024
# Bodies of the routes that take no upload.
SMALL_BODY = 64 * 1024

DESCRIPTION = """Brain-MRI diagnosis support. Send one slice to `POST /predict` (or the slices of one
subject to `POST /predict/study`) as multipart form data with the `task` (`tumor` or `dementia`); get
calibrated class probabilities, an out-of-distribution flag and the model version. JPEG, PNG and
single-frame DICOM are accepted. A study's slices go in stack order (lowest first): for `dementia` the
subject-level answer comes from an attention-MIL head that reads each slice's position.

Errors always have the body `{"error": {"code", "message"}}`. Send `X-API-Key` unless the server runs in
development mode. Not a medical device: results support, and never replace, a clinician's judgement."""


def create_app(settings: InferenceSettings | None = None) -> FastAPI:
    settings = settings or InferenceSettings()
    configure_logging(settings.log_level)
    metrics = InferenceMetrics()
    store = ModelStore(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        torch.set_num_threads(settings.torch_threads)
        log_auth_mode(settings.api_keys, "inference")
        # Load in the background so /healthz answers while /readyz waits for the models.
        loading = asyncio.get_running_loop().run_in_executor(None, store.load_all)
        try:
            yield
        finally:
            loading.cancel()
            store.close()

    app = FastAPI(title="diseaseid inference", version="1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.store = store
    app.state.metrics = metrics
    app.state.decode_gate = DecodeGate(settings)
    configure_auth(app, settings.api_keys)
    install_error_handlers(app)
    app.include_router(predict.router)
    app.include_router(models.router)
    app.include_router(health.router)
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics.http)
    # Outermost: oversized bodies are refused before anything else reads them.
    app.add_middleware(BodyLimitMiddleware, default=SMALL_BODY, per_path={
        "/predict": settings.max_upload_bytes + FORM_OVERHEAD,
        "/predict/study": settings.max_study_bytes,
    })
    keep_uploads_in_memory(max(settings.max_upload_bytes + FORM_OVERHEAD, settings.max_study_bytes))
    return app


app = create_app()
