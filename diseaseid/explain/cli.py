"""``diseaseid explain`` (heatmaps for slices) and ``diseaseid explain-eval`` (their faithfulness)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from diseaseid.explain.lrp.composites import COMPOSITES

METHOD_CHOICES = {"lrp": ("lrp",), "gradcam": ("gradcam",), "both": ("gradcam", "lrp")}


def register(subparsers) -> None:
    p = subparsers.add_parser("explain", help="write LRP / Grad-CAM overlays, a panel and raw maps",
                              description="Explain the shipped model's decision on MRI slices.")
    p.add_argument("images", nargs="+", help="JPEG/PNG slices")
    p.add_argument("--task", required=True)
    p.add_argument("--method", choices=sorted(METHOD_CHOICES), default="both")
    p.add_argument("--model", choices=("student", "teacher"), default="student")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--target", help="class (name or index) to explain; default: the predicted one")
    p.add_argument("--composite", choices=sorted(COMPOSITES), help="LRP rules (default: epsilon_gamma_box)")
    p.add_argument("--compact", action="store_true", help="palette PNGs, a third of the size (for documents)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run_explain)

    e = subparsers.add_parser("explain-eval", help="deletion/insertion faithfulness of the explainers",
                              description="Deletion and insertion curves for LRP, Grad-CAM, the gradient "
                                          "and a random map on validation slices.")
    e.add_argument("--task", required=True)
    e.add_argument("--n", type=int, default=64, help="number of validation slices")
    e.add_argument("--out", required=True, help="output directory (JSON, markdown table, PNG plot)")
    e.add_argument("--model", choices=("student", "teacher"), default="student")
    e.add_argument("--steps", type=int, default=16, help="points per curve")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--composite", nargs="+", choices=sorted(COMPOSITES),
                   help="LRP composite(s) to compare (default: epsilon_gamma_box)")
    e.add_argument("--patch", type=int, default=8, help="perturb squares of this side (pixels)")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--data", help="image-folder root (default: the task's data under the shared data root)")
    e.add_argument("--threads", type=int, help="torch CPU threads")
    e.add_argument("--device", default="cpu")
    e.set_defaults(func=run_eval)


def _target_index(target: str | None, classes: tuple[str, ...]) -> int | None:
    if target is None:
        return None
    if target.isdigit():
        index = int(target)
    elif target in classes:
        index = classes.index(target)
    else:
        raise SystemExit(f"unknown class {target!r}; classes: {', '.join(classes)}")
    if not 0 <= index < len(classes):
        raise SystemExit(f"class index out of range 0..{len(classes) - 1}")
    return index


def run_explain(args: argparse.Namespace) -> int:
    from diseaseid.data.preprocess import ImageDecodeError, decode_image, normalize
    from diseaseid.explain.api import explain_maps
    from diseaseid.explain.render import compact_png, gradcam_overlay_png, lrp_overlay_png, panel_png
    from diseaseid.serving.predictor import Predictor

    predictor = Predictor.from_shipped(args.task, args.model, args.device)
    classes = predictor.task.classes
    target = _target_index(args.target, classes)
    methods = METHOD_CHOICES[args.method]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    status = 0
    for path in args.images:
        try:
            image = decode_image(path)
        except (ImageDecodeError, OSError) as exc:
            print(json.dumps({"image": path, "error": str(exc)}))
            status = 1
            continue
        prediction = predictor.predict([image])[0]
        maps, targets = explain_maps(predictor.model, normalize(image, args.device), methods, target,
                                     composite=args.composite)
        explained = int(targets[0])
        stem = out / Path(path).stem
        written = []
        for method, m in maps.items():
            np.save(stem.with_name(f"{stem.name}.{method}.npy"), m[0])
            png = (gradcam_overlay_png if method == "gradcam" else lrp_overlay_png)(image, m[0])
            png = compact_png(png) if args.compact else png
            stem.with_name(f"{stem.name}.{method}.png").write_bytes(png)
            written += [f"{stem.name}.{method}.npy", f"{stem.name}.{method}.png"]
        prob = prediction.probabilities[classes[explained]]
        title = f"{predictor.task.display(explained, 'en')}: {prob:.0%} ({predictor.name})"
        if explained != prediction.label_index:
            title = f"Why {predictor.task.display(explained, 'en')}? ({prob:.0%}; predicted " \
                    f"{prediction.display_en}) ({predictor.name})"
        panel = panel_png(image, maps.get("gradcam", [None])[0], maps.get("lrp", [None])[0], title)
        panel = compact_png(panel) if args.compact else panel
        stem.with_name(f"{stem.name}.panel.png").write_bytes(panel)
        written.append(f"{stem.name}.panel.png")
        print(json.dumps({"image": path, "prediction": prediction.label, "explained": classes[explained],
                          "probability": round(prob, 4), "files": written}))
    return status


def run_eval(args: argparse.Namespace) -> int:
    from diseaseid.explain.evaluation import evaluate, set_threads, write

    set_threads(args.threads)
    evaluation = evaluate(args.task, args.n, args.model, args.steps, args.seed, args.composite,
                          args.batch_size, args.device, args.data, args.patch)
    for path in write(evaluation, args.out):
        print(path)
    print(evaluation.markdown())
    return 0
