"""``explain_maps``: the one call services make. Heatmaps for a batch, one forward pass shared by the methods.

Everything a model needs (its traced graph with BatchNorm folded, the LRP rules with their modified
weights) is built on the first call and cached on the model, so a worker calling this per job pays only for
the passes.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn

from diseaseid.explain.gradcam import VARIANTS, GradCAM
from diseaseid.explain.graph import backprop, compile_graph
from diseaseid.explain.lrp.composites import DEFAULT_COMPOSITE_NAME, Composite, get_composite
from diseaseid.explain.lrp.propagate import LRP, output_relevance, select_targets

MAP_METHODS = ("gradcam", "gradcam++", "hirescam", "lrp", "gradient")
DEFAULT_COMPOSITE = get_composite(DEFAULT_COMPOSITE_NAME)


def explain_maps(model: nn.Module, x: torch.Tensor, methods: Sequence[str] = ("gradcam", "lrp"),
                 target: int | Sequence[int] | torch.Tensor | None = None,
                 composite: Composite | str | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Heatmaps explaining ``model``'s score for ``target`` (default: the predicted class) on ``x``.

    ``x``: N x 3 x H x W, normalised as for the model, on the model's device. Returns ``({method: N x H x W
    float32}, targets)``:

    * ``"gradcam"`` -- Grad-CAM (Selvaraju et al. 2017) on ``model.gradcam_layer``, scaled to [0, 1];
      ``"gradcam++"`` -- Grad-CAM++ (Chattopadhay et al. 2018), ``"hirescam"`` -- HiResCAM (Draelos & Carin
      2020; faithful for flatten + dense heads like the students'), the same scale;
    * ``"lrp"`` -- layer-wise relevance propagation (Bach et al. 2015; Montavon et al. 2019), signed relevance
      summed over colour channels; it sums to about the explained logit (exactly, without biases). The rules
      come from ``composite`` (default: z^B at the input, gamma for convolutions, epsilon for dense layers);
    * ``"gradient"`` -- the plain input gradient's largest absolute value over channels (Simonyan et al.
      2014).
    """
    unknown = [m for m in methods if m not in MAP_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(MAP_METHODS)}")
    if x.ndim != 4:
        raise ValueError(f"x must be N x C x H x W, got shape {tuple(x.shape)}")
    graph = compile_graph(model, fold=True)
    size = tuple(x.shape[-2:])
    maps: dict[str, np.ndarray] = {}
    with torch.no_grad():
        values, ctxs = graph.run(x)
        logits = values[graph.output]
        targets = select_targets(logits, target)
        for method in methods:
            if method in VARIANTS:
                cam = GradCAM.for_model(model, variant=method)
                result = (cam.from_forward(values, ctxs, targets, size) if cam.graph is graph
                          else cam(x, targets, size))
                maps[method] = _numpy(result.maps)
            elif method == "lrp":
                lrp = LRP.for_model(model, get_composite(composite or DEFAULT_COMPOSITE))
                relevance = lrp.propagate(values, ctxs, output_relevance(logits, targets))[0]
                maps[method] = _numpy(relevance.sum(1))
            else:
                onehot = torch.zeros_like(logits).scatter_(1, targets.view(-1, 1), 1.0)
                grad = backprop(graph, values, ctxs, onehot)
                maps[method] = _numpy(grad.abs().amax(1))
    return maps, targets.cpu().numpy()


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy().astype(np.float32, copy=False)
