"""Explainer latency: ours beside Captum, Zennit and pytorch-grad-cam on the same model and input, batch 1.

Random weights (the architecture sets the cost, not the values). Each third-party tool is set up once outside
the timed loop (Zennit's composite registered, Captum's LRP and grad-cam's object built), its most favourable
use. Ratios compare numbers from this one run. Captum cannot run Lite0 (no rule for ReLU6; residual additions
are invisible to it); Zennit runs it but passes relevance through the additions unsplit, so its numbers there
are timing only. Goals, CPU: student LRP <= 30 ms, Grad-CAM <= 15 ms; teacher both <= 100 ms.

On the CPU it runs at the configured torch threads and, when that is more than one, again at one thread: on a
shared machine two threads wait on each other at every operation and the one-thread numbers are the stable
ones (the "best" column shows what an idle machine gives).
"""
from __future__ import annotations

import statistics
import time
import warnings

import torch

from diseaseid.explain import explain_maps
from diseaseid.explain.gradcam import GradCAM
from diseaseid.explain.lrp import EPSILON, EPSILON_PLUS_FLAT, LRP
from diseaseid.explain.lrp.composites import DEFAULT_COMPOSITE_NAME
from diseaseid.models import create_model

ARCHS = ("convnet1", "convnet2", "lite0")


def _time(fn, repeats: int, sync) -> dict:
    for _ in range(3):
        fn()
    sync()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": statistics.median(out), "min_ms": min(out)}


def _third_party(model, x, target: int) -> dict:
    """Callables for the other tools, or the reason one cannot run this model."""
    tools: dict = {}
    try:
        from pytorch_grad_cam import GradCAM as PGC
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cam = PGC(model=model, target_layers=[model.get_submodule(model.gradcam_layer)])
        tools["grad-cam GradCAM"] = lambda: cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])
    except Exception as exc:  # a tool's failure is a result, not a crash
        tools["grad-cam GradCAM"] = f"{type(exc).__name__}: {exc}"
    try:
        from captum.attr import LRP as CaptumLRP

        captum = CaptumLRP(model)
        xr = x.clone().requires_grad_()
        captum.attribute(xr, target=target)  # fails here on unsupported layers
        tools["Captum LRP (epsilon)"] = lambda: captum.attribute(xr, target=target)
    except Exception as exc:
        tools["Captum LRP (epsilon)"] = f"{type(exc).__name__}: {str(exc)[:80]}"
    try:
        from zennit.attribution import Gradient
        from zennit.canonizers import SequentialMergeBatchNorm
        from zennit.composites import EpsilonPlusFlat

        composite = EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])
        attributor = Gradient(model, composite)
        attributor.__enter__()
        onehot = torch.zeros(1, 4, device=x.device)
        onehot[0, target] = 1.0
        tools["Zennit EpsilonPlusFlat"] = (lambda: attributor(x, onehot), attributor)
    except Exception as exc:
        tools["Zennit EpsilonPlusFlat"] = f"{type(exc).__name__}: {exc}"
    return tools


def bench_arch(arch: str, device: str, repeats: int) -> dict:
    torch.manual_seed(0)
    kwargs = {"pretrained": False} if arch == "lite0" else {}
    model = create_model(arch, **kwargs).eval().to(device)
    x = torch.randn(1, 3, 224, 224, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.no_grad():
        target = int(model(x).argmax())
    ours = {
        "forward (reference)": lambda: model(x),
        "ours Grad-CAM": lambda: GradCAM.for_model(model)(x),
        f"ours LRP ({DEFAULT_COMPOSITE_NAME})": lambda: LRP.for_model(model)(x),
        "ours LRP (epsilon_plus_flat)": lambda: LRP.for_model(model, EPSILON_PLUS_FLAT)(x),
        "ours LRP (epsilon)": lambda: LRP.for_model(model, EPSILON)(x),
        "ours explain_maps(gradcam+lrp)": lambda: explain_maps(model, x),
    }
    rows: dict[str, dict] = {}
    with torch.no_grad():
        for name, fn in ours.items():
            rows[name] = _time(fn, repeats, sync)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, tool in _third_party(model, x, target).items():
            if isinstance(tool, str):
                rows[name] = {"error": tool}
                continue
            fn, context = tool if isinstance(tool, tuple) else (tool, None)
            try:
                rows[name] = _time(fn, repeats, sync)
            except Exception as exc:
                rows[name] = {"error": f"{type(exc).__name__}: {str(exc)[:80]}"}
            finally:
                if context is not None:
                    context.__exit__(None, None, None)
    return rows


def ratios(rows: dict) -> dict:
    """How many times faster ours is (their p50 / our p50), pairing like with like."""
    pairs = {"grad-cam GradCAM": "ours Grad-CAM", "Captum LRP (epsilon)": "ours LRP (epsilon)",
             "Zennit EpsilonPlusFlat": "ours LRP (epsilon_plus_flat)"}
    out = {}
    for theirs, mine in pairs.items():
        if "p50_ms" in rows.get(theirs, {}) and "p50_ms" in rows.get(mine, {}):
            out[f"{theirs} / {mine}"] = rows[theirs]["p50_ms"] / rows[mine]["p50_ms"]
    return out


def run(quick: bool = False) -> dict:
    repeats = 10 if quick else 30
    threads = torch.get_num_threads()
    settings = [("cpu", n) for n in sorted({threads, 1}, reverse=True)]
    if torch.cuda.is_available():
        settings.append(("cuda", threads))
    results: dict = {"threads": threads, "repeats": repeats, "runs": []}
    try:
        for device, n in settings:
            torch.set_num_threads(n)
            for arch in ARCHS:
                rows = bench_arch(arch, device, repeats)
                results["runs"].append({"device": device, "threads": n, "arch": arch, "rows": rows,
                                        "ratios": ratios(rows)})
    finally:
        torch.set_num_threads(threads)
    print(f"\nExplainer latency at batch 1, random weights (median and best of {repeats}):")
    for run_ in results["runs"]:
        print(f"\n{run_['arch']} on {run_['device']} ({run_['threads']} torch threads)")
        for name, r in run_["rows"].items():
            if "error" in r:
                print(f"  {name:<34} cannot run: {r['error']}")
            else:
                print(f"  {name:<34} {r['p50_ms']:8.2f} ms  (best {r['min_ms']:.2f})")
        for name, ratio in run_["ratios"].items():
            print(f"  speed-up {name}: {ratio:.1f}x")
    return results
