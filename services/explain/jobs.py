"""The job an explain worker runs: predict, explain, render, store. The ML lives in ``diseaseid``; this only
wires it to Redis.

Grad-CAM: Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization". LRP: Bach et al. 2015, "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by
Layer-Wise Relevance Propagation"; Montavon et al. 2019, "Layer-Wise Relevance Propagation: An Overview".
"""
from __future__ import annotations

import io
import time

import numpy as np
from rq import get_current_job

from diseaseid.data.preprocess import IMAGE_SIZE, normalize
from diseaseid.explain import explain_maps
from diseaseid.explain.render import gradcam_overlay_png, lrp_overlay_png, panel_png
from diseaseid.serving import Predictor
from services.explain.models import get_predictor
from services.explain.settings import METHODS, get_settings
from services.explain.store import ExplainStore

IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)
OVERLAYS = {"gradcam": gradcam_overlay_png, "lrp": lrp_overlay_png}


class BadJobPayload(ValueError):
    """The job's arguments cannot be explained; retrying would fail the same way."""


def image_from_payload(pixels: bytes) -> np.ndarray:
    if not isinstance(pixels, (bytes, bytearray)) or len(pixels) != int(np.prod(IMAGE_SHAPE)):
        raise BadJobPayload(f"the job's image is not {IMAGE_SIZE}x{IMAGE_SIZE}x3 uint8 pixels")
    return np.frombuffer(pixels, np.uint8).reshape(IMAGE_SHAPE)


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def warm_up(predictor: Predictor) -> None:
    """One throw-away explanation and panel, so that tracing the model, building its LRP rules (both cached
    on the model by ``explain_maps``) and loading the colormaps and fonts happen at worker start rather
    than in the first client's job."""
    image = np.zeros(IMAGE_SHAPE, np.uint8)
    x = normalize(image[None], predictor.device)
    maps, _ = explain_maps(predictor.model, x, methods=METHODS, target=0)
    panel_png(image, maps["gradcam"][0], maps["lrp"][0], "warm-up")


def explain_job(pixels: bytes, task: str, role: str, methods: list[str], target: int | None = None) -> dict:
    """Explain one 224x224x3 uint8 slice; PNG and .npy results go to Redis under this job's id.

    Returns the small JSON-able part of the result: the prediction, the explained class, each map's value
    range, and where the time went.
    """
    settings = get_settings()
    started = time.perf_counter()
    image = image_from_payload(pixels)
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        raise BadJobPayload(f"unknown explanation method(s) {unknown}; choose from {', '.join(METHODS)}")
    if settings.debug_delay_s > 0:
        time.sleep(settings.debug_delay_s)

    predictor = get_predictor(task, role, settings.torch_device())
    classes = predictor.task.classes
    if target is not None and not 0 <= int(target) < len(classes):
        raise BadJobPayload(f"target {target} is not a class index of task {task!r} (0..{len(classes) - 1})")
    timing: dict[str, float] = {}

    t0 = time.perf_counter()
    prediction = predictor.predict(image[None])[0]
    timing["predict"] = time.perf_counter() - t0
    target_index = prediction.label_index if target is None else int(target)

    t0 = time.perf_counter()
    # All methods in one call: they share the forward pass.
    out, _ = explain_maps(predictor.model, normalize(image[None], predictor.device), methods=tuple(methods),
                          target=target_index)
    maps = {m: np.ascontiguousarray(out[m][0], dtype=np.float32) for m in methods}
    timing["explain"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    files: dict[str, bytes] = {}
    summary: dict[str, dict] = {}
    for method, heatmap in maps.items():
        t1 = time.perf_counter()
        files[f"{method}.png"] = OVERLAYS[method](image, heatmap)
        files[f"{method}.npy"] = npy_bytes(heatmap)
        summary[method] = {"min": float(heatmap.min()), "max": float(heatmap.max()),
                           "render_ms": round((time.perf_counter() - t1) * 1000, 1)}
    label = predictor.task.display(target_index, "en")
    title = f"{prediction.display_en} ({prediction.probabilities[prediction.label]:.0%}), {role} model"
    if target_index != prediction.label_index:
        title += f"; explaining {label}"
    files["panel.png"] = panel_png(image, maps.get("gradcam"), maps.get("lrp"), title)
    timing["render"] = time.perf_counter() - t0

    job = get_current_job()
    if job is not None:
        # The API chose the TTL when it queued the job; the files live exactly as long as the job's result.
        ttl = job.result_ttl if job.result_ttl and job.result_ttl > 0 else settings.ttl_s
        store = ExplainStore(job.connection, ttl)
        store.put_results(job.id, files)
        timing["total"] = time.perf_counter() - started
        store.record_durations(timing)
    else:
        timing["total"] = time.perf_counter() - started

    return {
        "task": task,
        "model": {"role": role, "name": predictor.name, "version": predictor.version,
                  "device": str(predictor.device)},
        "prediction": prediction.to_dict(),
        "target": {"index": target_index, "label": classes[target_index], "display_en": label,
                   "display_ru": predictor.task.display(target_index, "ru")},
        "methods": summary,
        "timing_ms": {k: round(v * 1000, 1) for k, v in timing.items()},
    }
