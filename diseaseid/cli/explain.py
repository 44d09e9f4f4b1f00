"""``diseaseid explain`` (heatmaps for slices) and ``diseaseid explain-eval`` (their faithfulness)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from diseaseid.explain.lrp.composites import COMPOSITES
from diseaseid.paths import ROLES

METHOD_CHOICES = {"lrp": ("lrp",), "gradcam": ("gradcam",), "both": ("gradcam", "lrp")}


def register(subparsers) -> None:
    p = subparsers.add_parser("explain", help="write LRP / Grad-CAM overlays, a panel and raw maps",
                              description="Explain the shipped model's decision on MRI slices.")
    p.add_argument("images", nargs="+", help="JPEG/PNG slices")
    p.add_argument("--task", required=True)
    p.add_argument("--method", choices=sorted(METHOD_CHOICES), default="both")
    p.add_argument("--model", choices=ROLES, default="student")
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
    e.add_argument("--model", choices=ROLES, default="student")
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


def run_explain(args: argparse.Namespace) -> int:
    from diseaseid.data.preprocess import ImageDecodeError, decode_image
    from diseaseid.explain.report import explain_slice
    from diseaseid.serving import Predictor

    predictor = Predictor.from_shipped(args.task, args.model, args.device)
    classes = predictor.task.classes
    try:
        target = None if args.target is None else predictor.task.class_index(args.target)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
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
        report = explain_slice(predictor, image, METHOD_CHOICES[args.method], target, args.composite,
                               compact=args.compact)
        stem = Path(path).stem
        for name, data in report.files.items():
            (out / f"{stem}.{name}").write_bytes(data)
        # no class named, no probability, for an image without a diagnosis: nothing to misread as one
        explained = classes[report.target] if report.prediction.is_diagnosis else None
        print(json.dumps({"image": path, "outcome": report.prediction.outcome,
                          "prediction": report.prediction.label, "explained": explained,
                          "probability": None if explained is None else round(
                              report.prediction.probabilities[explained], 4),
                          "files": [f"{stem}.{name}" for name in report.files]}))
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
