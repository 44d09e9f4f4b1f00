"""``explain_slice``: one slice's whole explanation -- prediction, heatmaps, overlays, raw maps and the panel.

The one function behind ``diseaseid explain`` (files on disk) and the explain worker (files in Redis): both
get the same bytes under the same names and the same panel title.

Grad-CAM: Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization". LRP: Bach et al. 2015, "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by
Layer-Wise Relevance Propagation"; Montavon et al. 2019, "Layer-Wise Relevance Propagation: An Overview".
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from diseaseid.data.tensors import normalize
from diseaseid.explain.lrp.composites import Composite
from diseaseid.explain.maps import explain_maps
from diseaseid.explain.render import (
    BLENDS,
    compact_png,
    gradcam_overlay_png,
    gray_levels,
    lrp_overlay_png,
    overlay_png,
    panel_png,
)
from diseaseid.percent import percent
from diseaseid.serving.predictor import Prediction, Predictor
from diseaseid.tasks import Task

# The methods a report draws, each with its overlay (drawn here by ``render.BLENDS`` and ``overlay_png``, which
# these functions chain); the panel shows them in this order.
OVERLAYS: dict[str, Callable[[np.ndarray, np.ndarray], bytes]] = {
    "gradcam": gradcam_overlay_png,
    "lrp": lrp_overlay_png,
}
REPORT_METHODS = tuple(OVERLAYS)


@dataclass
class Report:
    """What ``explain_slice`` made. ``files`` maps ``"<method>.png"``, ``"<method>.npy"`` and ``"panel.png"``
    to their bytes; ``timing`` holds seconds per stage (predict, explain, render) and ``render_s`` per
    method."""

    prediction: Prediction
    target: int  # the explained class index
    maps: dict[str, np.ndarray]  # method -> H x W float32
    files: dict[str, bytes]
    title: str
    timing: dict[str, float]
    render_s: dict[str, float]


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def panel_title(task: Task, prediction: Prediction, target: int, model: str) -> str:
    """The panel's title: ``"Glioma: 93% (tumor/student:lite0_stage5)"``; for a class other than the predicted
    one, ``"Why Meningioma? (4%; predicted Glioma) (...)"``. An image without a diagnosis (flagged as not a brain
    MRI slice, or not the kind this task reads) gets what it is and no class, no percentage, whichever class the
    maps follow: ``"Not a brain MRI slice: no diagnosis (the maps show only what drives the model's score)
    (...)"``. Percentages never read 100% or 0% (``diseaseid.percent``)."""
    if not prediction.is_diagnosis:
        return f"{prediction.display_en}: no diagnosis (the maps show only what drives the model's score) ({model})"
    prob = percent(prediction.probabilities[task.classes[target]])
    if target == prediction.label_index:
        return f"{task.display(target, 'en')}: {prob} ({model})"
    return f"Why {task.display(target, 'en')}? ({prob}; predicted {prediction.display_en}) ({model})"


def explain_slice(predictor: Predictor, image: np.ndarray, methods: Sequence[str] = REPORT_METHODS,
                  target: int | None = None, composite: Composite | str | None = None,
                  compact: bool = False) -> Report:
    """Predict ``image`` (H x W x 3 uint8, the model's size) and explain ``target`` (a class index; default
    the predicted class) with ``methods`` (a subset of ``REPORT_METHODS``), rendered as PNG overlays, raw
    ``.npy`` maps and a titled panel (an image flagged as not a brain MRI slice gets no diagnosis, and the
    panel says so first). ``compact``: palette PNGs, about a third of the size (for documents).
    """
    unknown = [m for m in methods if m not in OVERLAYS]
    if not methods or unknown:
        raise ValueError(f"unknown explanation method(s) {unknown}; choose from {', '.join(REPORT_METHODS)}")
    if target is not None:
        target = predictor.task.class_index(target)
    png = compact_png if compact else (lambda data: data)
    timing: dict[str, float] = {}

    t0 = time.perf_counter()
    prediction = predictor.predict(image[None])[0]
    timing["predict"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    # All methods in one call: they share the forward pass.
    out, targets = explain_maps(predictor.model, normalize(image[None], predictor.device), methods=tuple(methods),
                                target=prediction.top_index if target is None else target, composite=composite)
    maps = {m: np.ascontiguousarray(out[m][0], dtype=np.float32) for m in methods}
    explained = int(targets[0])
    timing["explain"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    files: dict[str, bytes] = {}
    render_s: dict[str, float] = {}
    gray = gray_levels(image)  # what every picture is drawn over, converted once
    drawn: dict[str, Image.Image] = {}  # each overlay drawn once, for its own PNG and the panel's tile
    for method, heatmap in maps.items():
        t1 = time.perf_counter()
        drawn[method] = BLENDS[method](gray, heatmap)
        files[f"{method}.png"] = png(overlay_png(drawn[method]))
        files[f"{method}.npy"] = npy_bytes(heatmap)
        render_s[method] = time.perf_counter() - t1
    title = panel_title(predictor.task, prediction, explained, predictor.name)
    files["panel.png"] = png(panel_png(gray, maps.get("gradcam"), maps.get("lrp"), title,
                                       original="MRI slice" if prediction.is_diagnosis else "Input image", rgb=drawn))
    timing["render"] = time.perf_counter() - t0
    return Report(prediction, explained, maps, files, title, timing, render_s)
