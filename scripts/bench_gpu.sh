#!/usr/bin/env bash
# One short GPU run for whoever has one (the serving goals): the shipped networks at batch 1 and 16 under each GPU runtime
# (eager PyTorch, PyTorch with CUDA graphs, ONNX Runtime's CUDA and TensorRT providers where onnxruntime-gpu
# offers them), then the explain worker (`python -m bench --only explain`: one worker on cuda, student and
# teacher) and POST /predict on cuda (`python -m bench --only predict` with DISEASEID_DEVICE=cuda).
#
#   scripts/bench_gpu.sh [OUT_DIR]      # default bench/results/gpu-<date>
#
# Needs the CUDA build of torch (the Dockerfile's TORCH_VARIANT=cuda, or pip's default torch wheel) and an
# NVIDIA driver; for the ONNX Runtime rows `pip install onnxruntime-gpu==<the pinned onnxruntime version>` in
# place of onnxruntime (and TensorRT's libraries for the TensorRT provider). About 5 minutes on an idle GPU host;
# every step is bounded (STEP_TIMEOUT, seconds). Writes runtimes.json, explain.json/txt, predict.json/txt and
# this run's log into OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-bench/results/gpu-$(date -u +%Y%m%d-%H%M)}
STEP_TIMEOUT=${STEP_TIMEOUT:-600}
mkdir -p "$OUT"
exec > >(tee "$OUT/run.log") 2>&1

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "bench_gpu.sh: torch sees no CUDA device (torch $("$PY" -c 'import torch; print(torch.__version__)')); nothing to measure" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
export DISEASEID_DEVICE=cuda

echo "== networks: runtimes on the GPU, batch 1 and 16"
timeout "$STEP_TIMEOUT" "$PY" - "$OUT/runtimes.json" <<'PY'
import json, statistics, sys, time, warnings

import numpy as np
import torch

from diseaseid.models.checkpoint import load_model
from diseaseid.serving import ROLES, shipped_weights
from diseaseid.serving.export import ServedGraph, cached_graph, logit_difference
from diseaseid.tasks import TASKS

warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
batches = {n: rng.integers(0, 255, (n, 224, 224, 3), dtype=np.uint8) for n in (1, 16)}


def timed(fn, x, repeats=50):
    for _ in range(5):
        fn(x)
    torch.cuda.synchronize()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        torch.cuda.synchronize()
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)


def cuda_graph_runner(graph, n):
    """The whole forward pass recorded once as a CUDA graph for batch n, replayed per call."""
    static = torch.zeros(n, 224, 224, 3, dtype=torch.uint8, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):
            graph(static)
    torch.cuda.current_stream().wait_stream(stream)
    cg = torch.cuda.CUDAGraph()
    with torch.cuda.graph(cg), torch.inference_mode():
        out = graph(static)

    def run(x):
        static.copy_(torch.from_numpy(x), non_blocking=True)
        cg.replay()
        return out[0].cpu().numpy()
    return run


rows = []
try:
    import onnxruntime as ort
    providers = ort.get_available_providers()
except ImportError:
    ort, providers = None, []
print("onnxruntime providers:", providers)
for task in TASKS:
    for role in ROLES:
        try:
            weights = shipped_weights(task, role)
        except FileNotFoundError:
            continue
        model, _ = load_model(weights, "cuda")
        graph = ServedGraph(model).eval().cuda()

        @torch.inference_mode()
        def eager(x, graph=graph):
            return graph(torch.from_numpy(x).cuda())[0].cpu().numpy()

        reference = eager(batches[16])
        runners = {"torch": {n: eager for n in batches},
                   "torch+cuda-graph": {n: cuda_graph_runner(graph, n) for n in batches}}
        exported = cached_graph(weights)
        for provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
            if provider not in providers:
                continue
            try:
                session = ort.InferenceSession(str(exported.path), providers=[provider, "CPUExecutionProvider"])
                run = lambda x, s=session: s.run(["logits"], {"images": x})[0]
                runners[f"onnxruntime {provider[:-17]}"] = {n: run for n in batches}
            except Exception as exc:  # a provider that fails to start is reported, not fatal
                print(f"{task}/{role}: {provider} failed: {exc}")
        for name, by_batch in runners.items():
            diff = logit_difference(by_batch[16](batches[16]), reference)
            ms = {n: timed(by_batch[n], batches[n]) for n in batches}
            rows.append({"task": task, "role": role, "runtime": name, "batch1_ms": ms[1],
                         "batch16_ms_per_image": ms[16] / 16, "relative_logit_diff": diff})
            print(f"{task}/{role:<8} {name:<28} batch 1 {ms[1]:7.2f} ms   batch 16 {ms[16] / 16:6.2f} ms/image   "
                  f"logits {diff:.1e} of eager")
json.dump({"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "providers": providers,
           "rows": rows}, open(sys.argv[1], "w"), indent=1)
PY

echo "== explain worker on the GPU (bench/explain.py: cuda rows)"
timeout "$STEP_TIMEOUT" "$PY" -m bench --quick --only explain --out "$OUT" && mv "$OUT/quick.json" "$OUT/explain.json" \
  && mv "$OUT/quick.txt" "$OUT/explain.txt"

echo "== POST /predict with the models on the GPU (1 and 16 clients)"
timeout "$STEP_TIMEOUT" "$PY" -m bench --quick --only predict --out "$OUT" && mv "$OUT/quick.json" "$OUT/predict.json" \
  && mv "$OUT/quick.txt" "$OUT/predict.txt"

echo "bench_gpu.sh: results in $OUT"
