"""The served graph of a shipped model: ImageNet normalisation and the network in one ONNX file, exported from the
committed weights on first use (or by ``diseaseid export`` at ship time) and cached, never committed.

The graph takes N x 224 x 224 x 3 uint8 slices, already pre-processed in numpy as for PyTorch
(``diseaseid.data.preprocess``: decode, head crop, resize), and gives ``logits`` (N x C) and ``features``
(N x F, the pooled penultimate features that the OOD detector and the subject-level head read), one pass.

Where it lives: ``<graphs>/<task>-<role>-<weights sha256[:16]>-<key>.onnx``, ``<graphs>`` from
``diseaseid.paths.graphs_dir`` (``$DISEASEID_GRAPHS``, else ``$DISEASEID_CACHE/graphs``, else ``.cache/graphs``;
the Docker image exports into ``/app/graphs`` when it is built). ``key`` hashes what else the graph depends
on (the normalisation constants, the input size, the opset, this module's format number), so new weights or a
changed contract export a new file and an old one is never read by mistake. A sidecar ``.json`` beside each
graph records the weights' and the graph's sha256, the versions that made it and how far its outputs were from
PyTorch's on a check batch; an export whose logits differ from PyTorch's by more than ``TOLERANCE`` is refused.

The exporter is ``torch.onnx``'s TorchScript one (``dynamo=False``): on the 2-core development machine it exports
a model in 2-4 s against 14 s for the ``torch.export`` one, with the same outputs to 1e-6. It is deprecated since
torch 2.9; a torch upgrade that drops it switches ``_export`` to ``dynamo=True`` (which needs ``onnxscript``).
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from diseaseid.data.preprocess import IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD
from diseaseid.data.tensors import normalize
from diseaseid.models.checkpoint import file_sha256, load_model, read_card
from diseaseid.paths import graphs_dir

log = logging.getLogger(__name__)

FORMAT = 1  # the graph's contract (inputs, outputs, what is inside); bump to invalidate every cached graph
OPSET = 18
# Largest logit difference from PyTorch an export may have, as a share of the batch's largest |logit| (at least
# 1, so small logits are held to 1e-4 absolute). The dementia student's flattened convolutional head gives logits
# up to +-107 on real slices, which ONNX Runtime's convolutions (summing in another order than PyTorch's oneDNN,
# with or without graph optimisations) reproduce to 7e-4: 7e-6 of the largest.
TOLERANCE = 1e-4
INPUT, OUTPUTS = "images", ("logits", "features")


class ExportMismatch(RuntimeError):
    """The exported graph does not answer as the PyTorch model does."""


def logit_difference(logits: np.ndarray, reference: np.ndarray) -> float:
    """max |logits - reference| over the largest |reference logit| (at least 1): what ``TOLERANCE`` bounds."""
    if not len(reference):
        return 0.0
    return float(np.abs(logits - reference).max() / max(1.0, float(np.abs(reference).max())))


class ServedGraph(nn.Module):
    """uint8 N x H x W x 3 -> (logits, pooled features): ``diseaseid.data.tensors.normalize`` and the model's
    ``forward_features`` / ``forward_head`` (timm's interface, which every registered model answers)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        # normalize's (x / 255 - mean) / std folded into one subtraction and one multiplication
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("scale", 1.0 / (torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (images.permute(0, 3, 1, 2).float() - self.mean) * self.scale
        fmap = self.model.forward_features(x)
        # as diseaseid.models.mil.slice_features and diseaseid.serving.ood_features read them
        return self.model.forward_head(fmap), self.model.forward_head(fmap, pre_logits=True)


def graph_key() -> str:
    """What the graph depends on besides the weights, hashed (8 hex digits)."""
    spec = {"format": FORMAT, "opset": OPSET, "size": IMAGE_SIZE, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]


def graph_path(weights: str | Path, weights_sha256: str | None = None) -> Path:
    """Where the graph of ``weights`` is (or will be) cached."""
    weights = Path(weights)
    card = read_card(weights)
    sha = weights_sha256 or file_sha256(weights.with_suffix(".safetensors"))
    name = f"{card.get('task', 'model')}-{card.get('role', card.get('arch', 'model'))}-{sha[:16]}-{graph_key()}"
    return graphs_dir() / f"{name}.onnx"


@dataclass(frozen=True)
class ExportedGraph:
    path: Path  # the .onnx file
    info: dict  # its sidecar JSON

    @property
    def sha256(self) -> str:
        return self.info["graph_sha256"]


def check_images(n: int = 4, seed: int = 0) -> np.ndarray:
    """A fixed batch that reaches every part of the network: noise, a flat image and a smooth gradient."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (max(n, 3), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    images[1] = 0
    ramp = np.linspace(0, 255, IMAGE_SIZE, dtype=np.float32)
    images[2] = np.round(np.add.outer(ramp, ramp) / 2).astype(np.uint8)[..., None]
    return images[:n]


def _export(graph: ServedGraph, path: Path) -> None:
    example = torch.from_numpy(check_images(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(graph, (example,), str(path), input_names=[INPUT], output_names=list(OUTPUTS),
                          dynamic_axes={name: {0: "n"} for name in (INPUT, *OUTPUTS)}, opset_version=OPSET,
                          dynamo=False)


def _differences(graph: ServedGraph, path: Path) -> dict[str, float]:
    """Largest |difference| of each output between ONNX Runtime and PyTorch (``normalize`` + the model) on
    ``check_images``."""
    import onnxruntime as ort

    images = check_images()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, features = session.run(list(OUTPUTS), {INPUT: images})
    with torch.inference_mode():
        model = graph.model
        fmap = model.forward_features(normalize(images))
        want_features = model.forward_head(fmap, pre_logits=True).numpy()
        want_logits = model.forward_head(fmap).numpy()
    return {"logits": float(np.abs(logits - want_logits).max()),
            "logits_relative": logit_difference(logits, want_logits),
            "features": float(np.abs(features - want_features).max())}


def export_graph(weights: str | Path, out: str | Path | None = None) -> ExportedGraph:
    """Export ``weights`` (a ``.safetensors`` with its card) to ``out`` (default: ``graph_path``), check it against
    PyTorch and write the sidecar JSON. Raises :class:`ExportMismatch` when the logits differ by more than
    ``TOLERANCE``."""
    weights = Path(weights).with_suffix(".safetensors")
    sha = file_sha256(weights)
    out = Path(out) if out is not None else graph_path(weights, sha)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model, card = load_model(weights, "cpu")
    graph = ServedGraph(model).eval()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        _export(graph, tmp)
        diff = _differences(graph, tmp)
        if diff["logits_relative"] > TOLERANCE:
            raise ExportMismatch(f"{weights}: exported logits differ from PyTorch's by {diff['logits']:.2e}, "
                                 f"{diff['logits_relative']:.2e} of the largest logit (> {TOLERANCE:g})")
        import onnx
        import onnxruntime

        info = {"weights": str(weights), "task": card.get("task"), "role": card.get("role"),
                "arch": card.get("arch"), "weights_sha256": sha, "graph_sha256": file_sha256(tmp),
                "graph_bytes": tmp.stat().st_size, "key": graph_key(), "format": FORMAT, "opset": OPSET,
                "inputs": {INPUT: ["n", IMAGE_SIZE, IMAGE_SIZE, 3, "uint8"]}, "outputs": list(OUTPUTS),
                "max_abs_diff_vs_torch": diff, "exporter": "torch.onnx (TorchScript)", "torch": torch.__version__,
                "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                "seconds": round(time.perf_counter() - start, 2),
                "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
        sidecar = out.with_suffix(".json")
        sidecar.write_text(json.dumps(info, indent=1) + "\n")
        tmp.replace(out)  # the graph last: a graph without its sidecar is never seen
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s to %s in %.1f s (logits within %.1e of PyTorch's, %.1e relative)", weights, out,
             info["seconds"], diff["logits"], diff["logits_relative"])
    return ExportedGraph(out, info)


def cached_graph(weights: str | Path, weights_sha256: str | None = None) -> ExportedGraph:
    """The cached graph of ``weights``, exported first when there is none. Processes that start together (the
    inference service and the explain workers) wait on one lock, so each graph is exported once."""
    weights = Path(weights).with_suffix(".safetensors")
    path = graph_path(weights, weights_sha256)
    found = _read(path)
    if found is not None:
        return found
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _read(path)
        return found if found is not None else export_graph(weights, path)


def _read(path: Path) -> ExportedGraph | None:
    sidecar = path.with_suffix(".json")
    if not (path.exists() and sidecar.exists()):
        return None
    try:
        info = json.loads(sidecar.read_text())
    except ValueError:
        return None
    if info.get("key") != graph_key() or info.get("graph_sha256") != file_sha256(path):
        return None  # another contract, or a damaged file: export again
    return ExportedGraph(path, info)
