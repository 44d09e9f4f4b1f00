"""The inference service app: ``uvicorn services.inference.main:app``.

Endpoints: ``POST /predict``, ``POST /predict/study``, ``GET /models``, ``/healthz``, ``/readyz``,
``/metrics``; OpenAPI docs at ``/docs``. Configuration comes from ``DISEASEID_*`` environment variables
(see :mod:`services.inference.settings` and :mod:`services.common.settings`). ``create_app(settings)``
builds a fresh app (tests build theirs with their own settings); ``app`` is the one built from the
environment.
"""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI

from diseaseid.serving.runtime import set_lone_budget
from services.common.app import FORM_OVERHEAD, build_app
from services.common.process import apply_process_settings
from services.inference.metrics import InferenceMetrics
from services.inference.model_runner import ModelRunner
from services.inference.routers import health, models, predict
from services.inference.settings import InferenceSettings, get_settings

DESCRIPTION = """Brain-MRI diagnosis support. Send one slice to `POST /predict` (or the slices of one
subject to `POST /predict/study`) as multipart form data with the `task` (`tumor` or `dementia`); get
calibrated class probabilities, an out-of-distribution flag and the model version. JPEG, PNG and
single-frame DICOM are accepted. A study's slices go in stack order (lowest first): for `dementia` the
subject-level answer comes from an attention-MIL head that reads each slice's position.

Errors always have the body `{"error": {"code", "message"}}`. Send `X-API-Key` unless the server runs in
development mode. Not a medical device: results support, and never replace, a clinician's judgement."""


def create_app(settings: InferenceSettings | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = InferenceMetrics()
    runner = ModelRunner(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        apply_process_settings(settings)  # priority, CPUs and threads, before the thread pools start
        set_lone_budget(settings.lone_pass_threads())  # before the runtimes load: a lone request's threads
        # Load in the background so /healthz answers while /readyz waits for the models.
        loading = asyncio.get_running_loop().run_in_executor(None, runner.load_all)
        try:
            yield
        finally:
            loading.cancel()
            runner.close()

    return build_app(
        name="inference", title="diseaseid inference", version="1.0", description=DESCRIPTION,
        settings=settings, lifespan=lifespan, routers=(predict.router, models.router, health.router),
        state={"models": runner, "metrics": metrics}, http_metrics=metrics.http,
        body_limits={"/predict": settings.max_upload_bytes + FORM_OVERHEAD, "/predict/study": settings.max_study_bytes},
    )


app = create_app()
