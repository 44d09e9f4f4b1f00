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
PyTorch's on a check batch; an export whose logits differ from PyTorch's by more than ``TOLERANCE`` (or, for a
model whose float32 logits are less precise than that, are further from the float64 result than PyTorch's) is
refused.

The exporter is ``torch.onnx``'s TorchScript one (``dynamo=False``): on the 2-core development machine it exports
a model in 2-4 s against 14 s for the ``torch.export`` one, with the same outputs to 1e-6. It is deprecated since
torch 2.9; a torch upgrade that drops it switches ``_export`` to ``dynamo=True`` (which needs ``onnxscript``).

A subject-level head (``weights/<task>/mil.*``) gets a graph too (``export_head``, ``cached_graph(...,
head=True)``): one subject's ``feats`` (1 x N x F) and ``pos`` (1 x N) in, ``logits`` (1 x C) and ``attention``
(1 x N) out, any N, checked against PyTorch at several N. Reading a cached graph needs no torch: only an export
does (this module imports torch where it exports), so a service whose graphs are exported serves without it.
"""
from __future__ import annotations

import contextlib
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

from diseaseid.cards import file_sha256, read_card
from diseaseid.data.preprocess import IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD
from diseaseid.paths import graphs_dir

log = logging.getLogger(__name__)

FORMAT = 3  # the graph's contract (inputs, outputs, what is inside); bump to invalidate every cached graph
# (2: the head gate's channel test written without a ReduceSum, _head_cells_by_windows; 3: a median-filtered
# model's filter on the uint8 pixels, ServedGraph)
OPSET = 18
# How far an export's logits may be from PyTorch's: 1e-4 of the batch's largest |logit| (at least 1, so small
# logits are held to 1e-4 absolute), or, where PyTorch's float32 logits are themselves further than that from the
# float64 result, no further from it than PyTorch's are (``excess_error``). The dementia student (a flattened
# convolutional head summing 7,776 terms that cancel) is such a model: on the fixtures its PyTorch float32 logits
# were 2.2e-3 from float64 and ONNX Runtime's 5.5e-4, so the two differ by 2.4e-3 while the graph is the closer.
TOLERANCE = 1e-4
INPUT, OUTPUTS = "images", ("logits", "features")
HEAD_FORMAT = 1  # the head graph's contract
HEAD_INPUTS, HEAD_OUTPUTS = ("feats", "pos"), ("logits", "attention")
HEAD_CHECK_SLICES = (1, 2, 3, 7, 32, 64)  # a head's graph must answer as PyTorch at each of these stack sizes


class ExportMismatch(RuntimeError):
    """The exported graph does not answer as the PyTorch model does."""


def float64_logits(model, images: np.ndarray) -> np.ndarray:
    """The model's logits computed in float64 (on a copy of it): the result both float32 runtimes round."""
    import copy

    import torch

    from diseaseid.data.tensors import normalize

    with torch.inference_mode():
        return copy.deepcopy(model).double()(normalize(images).double()).numpy()


def excess_error(logits: np.ndarray, torch_logits: np.ndarray, exact: np.ndarray) -> float:
    """How much further ``logits`` are from the float64 ``exact`` ones than PyTorch's float32 ``torch_logits``
    are, over the largest |logit| (at least 1); 0 or less when they are as close or closer."""
    if not len(exact):
        return 0.0
    ours, theirs = np.abs(logits - exact).max(), np.abs(torch_logits - exact).max()
    return float((ours - theirs) / max(1.0, float(np.abs(exact).max())))


def within_tolerance(logits: np.ndarray, torch_logits: np.ndarray, exact: np.ndarray | None = None) -> bool:
    """The served ``logits`` equal PyTorch's within ``TOLERANCE`` of the largest logit or, given the float64
    ``exact`` logits, are no further from them than PyTorch's are (plus ``TOLERANCE``)."""
    if logit_difference(logits, torch_logits) <= TOLERANCE:
        return True
    return exact is not None and excess_error(logits, torch_logits, exact) <= TOLERANCE


def logit_difference(logits: np.ndarray, reference: np.ndarray) -> float:
    """max |logits - reference| over the largest |reference logit| (at least 1): what ``TOLERANCE`` bounds."""
    if not len(reference):
        return 0.0
    return float(np.abs(logits - reference).max() / max(1.0, float(np.abs(reference).max())))


_served_graph = None


def _served_graph_class():
    """``ServedGraph``, defined on first use: it is a torch module, and reading graphs needs no torch."""
    global _served_graph
    if _served_graph is not None:
        return _served_graph
    import torch
    import torch.nn as nn

    from diseaseid.models.median import gaussian_kernels, input_smooth_of, median3, smooth, without_input_median

    class ServedGraph(nn.Module):
        """uint8 N x H x W x 3 -> (logits, pooled features): ``diseaseid.data.tensors.normalize`` and the model's
        ``forward_features`` / ``forward_head`` (timm's interface, which every registered model answers)."""

        def __init__(self, model: nn.Module):
            super().__init__()
            self.model = model  # what the graph is checked against (``_differences``)
            # a model with a median filter in front of its stem: the graph filters the uint8 pixels, the network
            # (the same parameters) reads them plain; the same logits to the bit (``without_input_median``)
            plain = without_input_median(model)
            self.pixel_median = plain is not None
            # its Gaussian after the median, if any, on the normalised pixels (the two commute: a kernel of sum 1)
            self.smooth = input_smooth_of(model)
            if self.smooth:  # kernels of a fixed shape, as the exporter needs them
                rows, columns = gaussian_kernels(self.smooth, 3)
                self.register_buffer("smooth_rows", rows)
                self.register_buffer("smooth_columns", columns)
            self.network = plain if plain is not None else model
            # normalize's (x / 255 - mean) / std folded into one subtraction and one multiplication
            self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255.0)
            self.register_buffer("scale", 1.0 / (torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255.0))

        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pixels = images.permute(0, 3, 1, 2)
            if self.pixel_median:
                pixels = median3(pixels)
            x = (pixels.float() - self.mean) * self.scale
            if self.smooth:
                x = smooth(x, self.smooth, (self.smooth_rows, self.smooth_columns))
            fmap = self.network.forward_features(x)
            # as diseaseid.models.mil.slice_features and diseaseid.ood.features read them
            return self.network.forward_head(fmap), self.network.forward_head(fmap, pre_logits=True)

    _served_graph = ServedGraph
    return ServedGraph


def __getattr__(name: str):
    if name == "ServedGraph":
        return _served_graph_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def graph_key(head: bool = False) -> str:
    """What the graph depends on besides the weights, hashed (8 hex digits)."""
    spec = {"format": FORMAT, "opset": OPSET, "size": IMAGE_SIZE, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    if head:
        spec = {"head_format": HEAD_FORMAT, "opset": OPSET, "inputs": HEAD_INPUTS, "outputs": HEAD_OUTPUTS}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]


def graph_path(weights: str | Path, weights_sha256: str | None = None, head: bool = False) -> Path:
    """Where the graph of ``weights`` is (or will be) cached: named by the weights' hash and, with the graph's
    contract, the architecture their card builds (``arch``, ``arch_args``: the same weights read through an input
    filter are another graph)."""
    weights = Path(weights)
    card = read_card(weights)
    sha = weights_sha256 or file_sha256(weights.with_suffix(".safetensors"))
    role = card.get("role", card.get("arch", "model"))
    built = json.dumps({"arch": card.get("arch"), "arch_args": card.get("arch_args", {})}, sort_keys=True)
    key = hashlib.sha256(f"{graph_key(head)}|{built}".encode()).hexdigest()[:8]
    name = f"{card.get('task', 'model')}-{role}-{sha[:16]}-{key}"
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


def _windows(n_in: int, n_out: int):
    """n_out x n_in 0/1 matrix: row i marks the inputs adaptive pooling gives output i (PyTorch's windows:
    from floor(i * n_in / n_out) to ceil((i + 1) * n_in / n_out))."""
    import torch

    m = torch.zeros(n_out, n_in)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)  # floor, ceil
        m[i, start:end] = 1.0
    return m


def _head_cells_by_windows(x, size):
    """``diseaseid.models.convnet.head_cells`` as the exporter can write it: its ``adaptive_max_pool2d`` of a 0/1
    mask to a size that does not divide the input's is "any head pixel in the window", i.e. window sums > 0, and
    the window sums are two products with constant matrices (the input size is the graph's fixed 224 x 224).

    "Any channel above the background" is written as the OR of the three channels' comparisons, the same booleans
    as ``any(dim=1)``, which the exporter writes as a cast and a ReduceSum across the channel axis: that sum was 7%
    of the gated ConvNet1's time under ONNX Runtime (its profiler, 300 runs), and the graph ran at 2.17 against
    2.39 ms (OpenVINO 2.05 against 2.07; batch 1, 2 threads, blocks of 20 interleaved, quiet machine; /tmp
    script), with logits equal to the bit on the 33 dementia fixtures."""
    import torch

    from diseaseid.models import convnet

    background = (-torch.tensor(convnet.IMAGENET_MEAN, dtype=x.dtype) / torch.tensor(convnet.IMAGENET_STD,
                                                                                   dtype=x.dtype)).view(1, -1, 1, 1)
    above = x > background + 1e-3
    head = (above[:, 0:1] | above[:, 1:2] | above[:, 2:3]).to(x.dtype)
    rows = _windows(int(x.shape[-2]), int(size[0])).to(x.dtype)
    cols = _windows(int(x.shape[-1]), int(size[1])).to(x.dtype).t()
    return ((rows @ head @ cols) > 0).to(x.dtype)


@contextlib.contextmanager
def _exportable():
    """Rewrites the exporter needs, undone on exit (the export then checks the graph against the untouched
    PyTorch model): ConvNet's head gate (``mask_background``) pools with ``adaptive_max_pool2d`` to the feature
    map's size, which the TorchScript exporter refuses ("output_size is not constant"). Exports run at start or
    at ship time, under the graph's file lock: nothing else of this process runs ConvNet meanwhile."""
    from diseaseid.models import convnet

    original = convnet.head_cells
    convnet.head_cells = _head_cells_by_windows
    try:
        yield
    finally:
        convnet.head_cells = original


def _export(graph, path: Path) -> None:
    import torch

    example = torch.from_numpy(check_images(2))
    with warnings.catch_warnings(), _exportable():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(graph, (example,), str(path), input_names=[INPUT], output_names=list(OUTPUTS),
                          dynamic_axes={name: {0: "n"} for name in (INPUT, *OUTPUTS)}, opset_version=OPSET,
                          dynamo=False)


def _differences(graph, path: Path) -> dict[str, float]:
    """Largest |difference| of each output between ONNX Runtime and PyTorch (``normalize`` + the model) on
    ``check_images``."""
    import onnxruntime as ort
    import torch

    from diseaseid.data.tensors import normalize

    images = check_images()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, features = session.run(list(OUTPUTS), {INPUT: images})
    with torch.inference_mode():
        model = graph.model
        fmap = model.forward_features(normalize(images))
        want_features = model.forward_head(fmap, pre_logits=True).numpy()
        want_logits = model.forward_head(fmap).numpy()
    exact = float64_logits(model, images)
    return {"logits": float(np.abs(logits - want_logits).max()),
            "logits_relative": logit_difference(logits, want_logits),
            "torch_vs_float64": float(np.abs(want_logits - exact).max()),
            "graph_vs_float64": float(np.abs(logits - exact).max()),
            "within_tolerance": within_tolerance(logits, want_logits, exact),
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
    import torch

    from diseaseid.models.checkpoint import load_model

    model, card = load_model(weights, "cpu")
    graph = _served_graph_class()(model).eval()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        _export(graph, tmp)
        diff = _differences(graph, tmp)
        if not diff["within_tolerance"]:
            raise ExportMismatch(f"{weights}: exported logits differ from PyTorch's by {diff['logits']:.2e}, "
                                 f"{diff['logits_relative']:.2e} of the largest logit (> {TOLERANCE:g}), and are "
                                 f"{diff['graph_vs_float64']:.2e} from the float64 logits (PyTorch's: "
                                 f"{diff['torch_vs_float64']:.2e})")
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


def _head_graph(head):
    """A subject-level head as its graph answers: (feats, pos) -> (logits, attention)."""
    import torch.nn as nn

    class HeadGraph(nn.Module):
        def __init__(self, head: nn.Module):
            super().__init__()
            self.head = head

        def forward(self, feats, pos):
            return self.head(feats, pos, return_attention=True)

    return HeadGraph(head)


def head_check_inputs(features: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(feats 1 x N x F, pos 1 x N) for each N in HEAD_CHECK_SLICES: embeddings of the scale the backbone
    gives (non-negative pooled activations), positions as diseaseid.serving.study sets them."""
    rng = np.random.default_rng(seed)
    out = []
    for n in HEAD_CHECK_SLICES:
        feats = np.abs(rng.normal(0.0, 1.0, (1, n, features))).astype(np.float32)
        pos = (np.linspace(0.0, 1.0, n, dtype=np.float32) if n > 1 else np.zeros(1, np.float32))[None]
        out.append((feats, pos))
    return out


def export_head(weights: str | Path, out: str | Path | None = None) -> ExportedGraph:
    """Export a subject-level head (``weights``: its ``.safetensors`` with its card) to ``out`` (default:
    ``graph_path(..., head=True)``), check it against PyTorch at every N in HEAD_CHECK_SLICES (a head whose
    forward pass depends on N in Python, which the tracer would freeze, fails there) and write the sidecar.
    Raises :class:`ExportMismatch` beyond ``TOLERANCE``."""
    import onnxruntime as ort
    import torch

    from diseaseid.models.checkpoint import load_model

    weights = Path(weights).with_suffix(".safetensors")
    sha = file_sha256(weights)
    out = Path(out) if out is not None else graph_path(weights, sha, head=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    head, card = load_model(weights, "cpu")
    graph = _head_graph(head.eval()).eval()
    features = int(card.get("arch_args", {}).get("in_features", 1280))
    checks = head_check_inputs(features)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        example = tuple(torch.from_numpy(a) for a in checks[3])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(graph, example, str(tmp), input_names=list(HEAD_INPUTS),
                              output_names=list(HEAD_OUTPUTS), opset_version=OPSET, dynamo=False,
                              dynamic_axes={"feats": {1: "n"}, "pos": {1: "n"}, "attention": {1: "n"}})
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}  # a head that ignores the positions has no ``pos``
        worst = {"logits": 0.0, "attention": 0.0}
        for feats, pos in checks:
            got = session.run(list(HEAD_OUTPUTS), {k: v for k, v in (("feats", feats), ("pos", pos)) if k in names})
            with torch.inference_mode():
                want = [t.numpy() for t in graph(torch.from_numpy(feats), torch.from_numpy(pos))]
            for name, g, w in zip(HEAD_OUTPUTS, got, want, strict=True):
                if g.shape != w.shape:
                    raise ExportMismatch(f"{weights}: the head graph's {name} has shape {g.shape} at "
                                         f"{feats.shape[1]} slices, PyTorch's {w.shape}")
                worst[name] = max(worst[name], logit_difference(g, w))
        if max(worst.values()) > TOLERANCE:
            raise ExportMismatch(f"{weights}: the head graph differs from PyTorch by {worst} (> {TOLERANCE:g})")
        import onnx

        info = {"weights": str(weights), "task": card.get("task"), "role": card.get("role"),
                "arch": card.get("arch"), "weights_sha256": sha, "graph_sha256": file_sha256(tmp),
                "graph_bytes": tmp.stat().st_size, "key": graph_key(head=True), "format": HEAD_FORMAT,
                "opset": OPSET, "inputs": {"feats": [1, "n", features, "float32"], "pos": [1, "n", "float32"]},
                "outputs": list(HEAD_OUTPUTS), "checked_slices": list(HEAD_CHECK_SLICES),
                "max_abs_diff_vs_torch": {**worst, "within_tolerance": True},
                "exporter": "torch.onnx (TorchScript)", "torch": torch.__version__, "onnx": onnx.__version__,
                "onnxruntime": ort.__version__, "seconds": round(time.perf_counter() - start, 2),
                "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
        out.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported head %s to %s (within %s of PyTorch)", weights, out, worst)
    return ExportedGraph(out, info)


def cached_graph(weights: str | Path, weights_sha256: str | None = None, head: bool = False) -> ExportedGraph:
    """The cached graph of ``weights`` (a subject-level head's with ``head``), exported first when there is none.
    Processes that start together (the inference service and the explain workers) wait on one lock, so each
    graph is exported once."""
    weights = Path(weights).with_suffix(".safetensors")
    path = graph_path(weights, weights_sha256, head)
    found = _read(path, head)
    if found is not None:
        return found
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _read(path, head)
        if found is not None:
            return found
        return export_head(weights, path) if head else export_graph(weights, path)


def _read(path: Path, head: bool = False) -> ExportedGraph | None:
    sidecar = path.with_suffix(".json")
    if not (path.exists() and sidecar.exists()):
        return None
    try:
        info = json.loads(sidecar.read_text())
    except ValueError:
        return None
    if info.get("key") != graph_key(head) or info.get("graph_sha256") != file_sha256(path):
        return None  # another contract, or a damaged file: export again
    return ExportedGraph(path, info)
