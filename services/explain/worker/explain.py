"""The job an explain worker runs: decode the payload, get the loaded model, call the ML core
(``diseaseid.explain.report.explain_slice``), store the files in Redis. Nothing here computes a map."""
from __future__ import annotations

import time

import numpy as np
from rq import get_current_job

from diseaseid.answers import ExplainJobResult
from diseaseid.data.preprocess import IMAGE_SIZE
from diseaseid.explain.report import explain_slice
from diseaseid.serving import Predictor
from services.explain.redis_store import ExplainStore
from services.explain.sealing import PAYLOAD, Sealer, SealError, process_sealer
from services.explain.settings import get_settings
from services.explain.worker import durations
from services.explain.worker.models import model_pool

IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)


class BadJobPayload(ValueError):
    """The job's arguments cannot be explained; retrying would fail the same way."""


def image_from_payload(pixels: bytes, sealer: Sealer | None = None) -> np.ndarray:
    """The job's image; sealed by the API (a job queued before sealing came in carries the bare pixels)."""
    if sealer is not None and Sealer.is_sealed(pixels):
        try:
            pixels = sealer.open(pixels, PAYLOAD)
        except SealError as exc:
            raise BadJobPayload(f"the job's image cannot be opened: {exc}") from None
    if not isinstance(pixels, (bytes, bytearray)) or len(pixels) != int(np.prod(IMAGE_SHAPE)):
        raise BadJobPayload(f"the job's image is not {IMAGE_SIZE}x{IMAGE_SIZE}x3 uint8 pixels")
    return np.frombuffer(pixels, np.uint8).reshape(IMAGE_SHAPE)


def warm_up(predictor: Predictor) -> None:
    """One throw-away report, so that tracing the model, building its LRP rules (both cached on the model)
    and loading the colormaps and fonts happen at worker start rather than in the first client's job."""
    explain_slice(predictor, np.zeros(IMAGE_SHAPE, np.uint8))


def job_pixels(pixels: bytes | None, job) -> bytes:
    """The job's image as queued: in its hash (``ExplainStore.PAYLOAD_FIELD``), or, for a job queued by an API from
    before that, its first argument."""
    if pixels is not None:
        return pixels
    stored = job.connection.hget(job.key, ExplainStore.PAYLOAD_FIELD) if job is not None else None
    if stored is None:
        raise BadJobPayload("the job's image is missing from its record")
    return stored


def explain_job(pixels: bytes | None, task: str, role: str, methods: list[str], target: int | None = None) -> dict:
    """Explain one 224x224x3 uint8 slice (``pixels``, sealed; None: kept in the job's hash, as the API queues it);
    PNG and .npy results go to Redis under this job's id.

    Returns the small JSON-able part of the result (``diseaseid.answers.ExplainJobResult``, as a dict): the
    prediction, the explained class, each map's value range, and where the time went. Bad arguments raise
    ValueError (the worker fails the job at once).
    """
    settings = get_settings()
    started = time.perf_counter()
    job = get_current_job()
    image = image_from_payload(job_pixels(pixels, job), process_sealer())
    if settings.debug_delay_s > 0:
        time.sleep(settings.debug_delay_s)
    predictor = model_pool().get(task, role)
    report = explain_slice(predictor, image, methods, target)
    timing = {**report.timing, "total": time.perf_counter() - started}

    if job is not None:
        # The API chose the TTL when it queued the job; the files live exactly as long as the job's result.
        store = ExplainStore(job.connection, job.result_ttl if job.result_ttl and job.result_ttl > 0
                             else settings.ttl_s, process_sealer())
        store.put_results(job.id, report.files)
        timing["total"] = time.perf_counter() - started
        # Into the histograms by the worker once this job's outcome is stored (services.explain.worker.durations).
        durations.hand_over(job.id, timing)

    t = predictor.task
    prediction = report.prediction
    # No diagnosis (flagged as not a brain MRI slice, or not the kind this task reads): no class anywhere, not
    # even the one the maps follow (naming it would read as a diagnosis); the probabilities stay in ``prediction``,
    # as /predict gives them.
    target = ({"index": report.target, "label": t.classes[report.target],
               "display_en": t.display(report.target, "en"), "display_ru": t.display(report.target, "ru")}
              if prediction.is_diagnosis else {"index": None, "label": None, "display_en": None, "display_ru": None})
    return ExplainJobResult.model_validate({
        # First: whether there is a diagnosis at all.
        "outcome": prediction.outcome,
        "notice": None if prediction.is_diagnosis else (
            f"{prediction.display_en}: no diagnosis ({'; '.join(prediction.ood_reasons)}). The maps show only "
            "what drives the model's score, no finding."),
        "task": task,
        "model": {"role": role, "name": predictor.name, "version": predictor.version,
                  "device": str(predictor.device)},
        "prediction": prediction.to_dict(),
        "target": target,
        "methods": {m: {"min": float(heatmap.min()), "max": float(heatmap.max()),
                        "render_ms": round(report.render_s[m] * 1000, 1)} for m, heatmap in report.maps.items()},
        "timing_ms": {k: round(v * 1000, 1) for k, v in timing.items()},
    }).model_dump(mode="json")
