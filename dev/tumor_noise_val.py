"""The tumor models under scanner noise on the whole validation split, several noise draws each.

    .venv/bin/python -m dev.tumor_noise_val                     # both shipped models, about 6 minutes on 2 cores
    .venv/bin/python -m dev.tumor_noise_val --roles student --mix runs/x/checkpoint.pt@0.5
    .venv/bin/python -m dev.tumor_noise_val --median --weights runs/tumor-student-median/student.safetensors

``diseaseid robustness`` scores 300 slices under one noise draw per level: 1 point there is 3 slices, about what
one draw against another moves. This measures all 1,144 validation slices (no near-duplicate group shared with
training) under ``--draws`` independent Rician draws per level, each applied to the raw slice and decoded by the
serving path, as the benchmark does. Printed per model: clean accuracy of the network's label, and per level the
accuracy averaged over draws, its drop from clean, and the share of answers changed from the clean answer.

``--mix PATH@A[,A...]``: also the shipped weights averaged with another checkpoint of the same architecture (a
training checkpoint's ``model``, or ``PATH.pt:best_state``, or a ``.safetensors``) at each weight A (1: that
checkpoint alone), to see whether a fine-tune's robustness and the shipped clean accuracy combine.

2026-12-05 (2 draws, the models shipped that day; the rows after the teacher's from ``--roles student --mix
runs/tumor-student-kdnoise2/checkpoint.pt@1,0.5,0.3``, a run not shipped and not committed):

    student clean 98.86 | sigma 4: 97.73 (-1.14), 1.31% changed | 8: 96.98 (-1.88), 2.14% | 12: 96.46 (-2.40), 2.58%
    teacher clean 98.69 | sigma 4: 98.08 (-0.61), 1.35% changed | 8: 96.77 (-1.92), 2.80% | 12: 95.67 (-3.02), 3.58%
    kdnoise2 alone        98.34 | 97.33 (-1.01) 1.09% | 96.72 (-1.62) 1.79% | 95.89 (-2.45) 2.62%
    averaged 0.5          98.60 | 97.47 (-1.14) 1.14% | 96.72 (-1.88) 2.05% | 96.07 (-2.53) 2.62%
    averaged 0.3          98.60 | 97.60 (-1.01) 1.01% | 96.85 (-1.75) 1.92% | 96.24 (-2.36) 2.53%

and with ``--mix runs/tumor-student-kdnoise/checkpoint.pt@1,0.5 runs/tumor-student-noise/student.safetensors@1``
(the shipped student's own fine-tune run after its last epoch, 5, where epoch 2 was shipped; and the noise
fine-tune before it, not committed):

    kdnoise epoch 5       98.60 | 97.42 (-1.18) 1.35% | 96.55 (-2.05) 2.40% | 95.76 (-2.84) 3.02%
    averaged 0.5          98.60 | 97.64 (-0.96) 1.49% | 96.81 (-1.79) 2.05% | 96.11 (-2.49) 2.75%
    noise fine-tune       98.51 | 97.51 (-1.01) 1.35% | 96.24 (-2.27) 2.62% | 94.84 (-3.67) 4.02%

The teacher with the student's median recipe (``tumor-teacher-median``, shipped as ``7d31ae6b5132``; ``--roles
teacher`` once shipped):

    teacher median        98.60 | 97.68 (-0.92) 0.92% | 97.42 (-1.18) 1.18% | 96.90 (-1.70) 2.10%

and the teacher then trained with scanner noise on the raw slice (``tumor-teacher-scan``, shipped as
``77a1520bb23d``; ``--roles teacher --weights runs/tumor-teacher-scan/student.safetensors`` before it shipped):

    teacher scan          99.04 | 98.08 (-0.96) 1.40% | 98.03 (-1.01) 1.35% | 97.38 (-1.66) 2.10%

and the student with the same recipe, distilled from that teacher (``tumor-student-scan``, shipped as
``3e4c8c6bc001``; ``--roles student --weights runs/tumor-student-scan/student.safetensors``):

    student scan          99.13 | 98.56 (-0.57) 0.57% | 98.25 (-0.87) 0.96% | 97.64 (-1.49) 1.66%

then the teacher fine-tuned once more from ``77a1520bb23d`` with more of each batch from the noisy copies
(``tumor-teacher-scan2``, 2026-12-06; ``--roles teacher --mix runs/tumor-teacher-scan2/checkpoint.pt@1,0.5 --weights
runs/tumor-teacher-scan2/student.safetensors``, 14 min): its best epoch, 1 of 3, was shipped as ``daca1805fa04``:

    scan2 epoch 3         99.13 | 98.30 (-0.83) 0.83% | 98.30 (-0.83) 1.09% | 97.60 (-1.53) 1.88%
    averaged 0.5          99.13 | 98.21 (-0.92) 1.01% | 98.08 (-1.05) 1.31% | 97.64 (-1.49) 1.84%
    scan2 epoch 1         99.13 | 98.30 (-0.83) 0.87% | 98.30 (-0.83) 1.01% | 97.77 (-1.35) 1.62%

and both shipped models fine-tuned once more (``tumor-teacher-scan3``, ``tumor-student-scan3``: lr 3e-5, 2 epochs,
raw-slice noise up to sigma 20, 95% of each batch from the noisy copies, each distilled from its own clean logits;
``--roles teacher --weights runs/tumor-teacher-scan3/student.safetensors`` and the same for the student,
2026-12-06, 8 and 17 min; epoch 2 of each shipped, as ``5ef6cf79e72f`` and ``da1477548050``):

    teacher scan3         99.13 | 98.34 (-0.79) 0.87% | 98.25 (-0.87) 1.05% | 97.95 (-1.18) 1.53%
    student scan3         99.13 | 98.51 (-0.61) 0.61% | 98.25 (-0.87) 0.87% | 97.90 (-1.22) 1.40%

Both shipped models read their crops Gaussian-smoothed by 0.5 px before their median, without a fine-tune
(``--roles student teacher --smooth 0.5``, 2026-12-06; "if noisy": clean slices left alone, as an ideal noise
gate would; the teacher's gated line was not waited for), and the teacher fine-tuned once more with four fresh
noise draws per slice (``tumor-teacher-scan4``; ``--roles teacher --levels 12 --draws 4 --mix
runs/tumor-teacher-scan4/epoch-02.pt@1 runs/tumor-teacher-scan4/epoch-03.pt@1``, four draws at sigma 12 only):

    student smoothed 0.5  98.95 | 98.60 (-0.35) 0.61% | 98.34 (-0.61) 1.14% | 98.25 (-0.70) 1.14%
      if noisy            99.13 | 98.60 (-0.52) 0.70% | 98.34 (-0.79) 0.79% | 98.25 (-0.87) 1.14%
    teacher smoothed 0.5  98.69 | 98.47 (-0.22) 0.57% | 98.21 (-0.48) 0.92% | 97.90 (-0.79) 1.22%
    teacher, 4 draws      99.13 |                     |                     | 97.81 (-1.31) 1.66%
    scan4 epoch 2         99.21 |                     |                     | 97.81 (-1.40) 1.53%
    scan4 epoch 3         99.13 |                     |                     | 97.66 (-1.46) 1.66%

The smoothing raises the student's noisy accuracy at every level (97.90 -> 98.25% at sigma 12) and costs it two
clean slices; the teacher's noisy accuracy stays where it was and only its clean figure falls. More of the
teacher's noise fine-tune no longer moves its noisy accuracy. The student fine-tuned with a 0.5 px Gaussian after
its median inside the network (``tumor-student-smooth``, ``--input-smooth 0.5``; ``--roles --weights
runs/tumor-student-smooth/student.safetensors``, not shipped):

    student smooth ft     99.21 | 98.73 (-0.48) 0.48% | 98.30 (-0.92) 0.92% | 97.99 (-1.22) 1.31%

Every uploaded slice, clean and noisy, denoised by non-local means before the serving path, the shipped models as
they are (``--levels 4 12 --draws 1 --nlm 6 10``, 2026-12-06, about 10 minutes):

    student (da1477548050) clean 99.13 | sigma 4: 98.34 (-0.79), 0.79% changed | sigma 12: 97.81 (-1.31), 1.49%
      denoised (NLM 6)     clean 97.90 | sigma 4: 98.08 (+0.17), 0.52% changed | sigma 12: 97.81 (-0.09), 1.92%
      denoised (NLM 10)    clean 96.94 | sigma 4: 96.42 (-0.52), 0.87% changed | sigma 12: 97.29 (+0.35), 2.62%
    teacher (5ef6cf79e72f) clean 99.13 | sigma 4: 98.43 (-0.70), 0.79% changed | sigma 12: 97.99 (-1.14), 1.40%
      denoised (NLM 6)     clean 97.90 | sigma 4: 97.90 (+0.00), 0.70% changed | sigma 12: 97.73 (-0.17), 2.36%
      denoised (NLM 10)    clean 96.50 | sigma 4: 96.50 (+0.00), 0.87% changed | sigma 12: 97.47 (+0.96), 2.88%

The gap closes only because the clean figure falls; the noisy one does not rise.

Before the median filters, on the whole split the shipped student missed issue 24's 1-point goal at sigma 4 as
well (the 300-slice sample said -0.4), both models missed the 2%-changed goal at sigma 8 and 12, and neither more
epochs of the shipped recipe, nor the stronger-noise fine-tune, nor averaging either with the shipped weights got
closer without losing clean accuracy.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np


def views(raws: list[np.ndarray], levels: list[int], draws: int,
          denoise: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The clean slices and each level's draws, decoded as served (224 x 224 x 3 uint8); with ``denoise``, each
    uploaded slice (uint8, H x W) passes through it first, clean and noisy alike."""
    from diseaseid.robustness.evaluate import _u8, decode
    from diseaseid.robustness.perturbations import rician

    def served(upload: np.ndarray) -> np.ndarray:
        return decode(denoise(upload) if denoise is not None else upload)

    out = {"clean": np.stack([served(_u8(r)) for r in raws])}
    for sigma in levels:
        for d in range(draws):
            rng = np.random.default_rng(100 * sigma + d)
            out[f"{sigma}.{d}"] = np.stack([served(rician(sigma)(r, rng)) for r in raws])
    return out


def nlm(strength: float) -> Callable[[np.ndarray], np.ndarray]:
    """Non-local means (Buades et al. 2005; OpenCV's ``fastNlMeansDenoising``: 7 x 7 patches, 21 x 21 search) of a
    uint8 slice, filter strength ``strength`` (of 255)."""
    import cv2

    return lambda upload: cv2.fastNlMeansDenoising(upload, None, strength, 7, 21)


def smooth(images: np.ndarray, sigma: float) -> np.ndarray:
    """Each crop Gaussian-smoothed in the plane (``sigma`` pixels), its zero background kept zero."""
    from scipy import ndimage

    out = ndimage.gaussian_filter(images.astype(np.float32), (0, sigma, sigma, 0))
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    out[images == 0] = 0
    return out


def labels(predictor, images: np.ndarray, batch: int = 128) -> np.ndarray:
    return np.concatenate([predictor.logits(images[i:i + batch]).numpy().argmax(1)
                           for i in range(0, len(images), batch)])


def line(name: str, predictor, seen: dict[str, np.ndarray], truth: np.ndarray, levels: list[int],
         draws: int) -> str:
    got = {k: labels(predictor, v) for k, v in seen.items()}
    clean = got["clean"]
    acc = 100 * (clean == truth).mean()
    parts = [f"clean {acc:.2f}"]
    for sigma in levels:
        a = 100 * np.mean([(got[f"{sigma}.{d}"] == truth).mean() for d in range(draws)])
        changed = 100 * np.mean([(got[f"{sigma}.{d}"] != clean).mean() for d in range(draws)])
        parts.append(f"sigma {sigma}: {a:.2f} ({a - acc:+.2f}), {changed:.2f}% changed")
    return f"{name:28s} " + " | ".join(parts)


def _state(spec: str):
    import torch

    if spec.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(spec)
    path, _, key = spec.partition(".pt:")
    path = path if path.endswith(".pt") else path + ".pt"
    return torch.load(path, map_location="cpu", weights_only=False)[key or "model"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roles", nargs="*", default=["student", "teacher"], choices=["student", "teacher"],
                        help="the shipped models to measure (none: only --weights)")
    parser.add_argument("--levels", nargs="+", type=int, default=[4, 8, 12])
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--mix", nargs="*", default=[], help="PATH@A[,A...]: shipped weights averaged with PATH")
    parser.add_argument("--median", action="store_true",
                        help="also each shipped model reading the 3 x 3 median of its input, without a fine-tune")
    parser.add_argument("--weights", nargs="*", default=[],
                        help="also these weights files (.safetensors with their cards), as they are")
    parser.add_argument("--smooth", nargs="*", type=float, default=[],
                        help="also each shipped model reading its crops Gaussian-smoothed (this sigma, pixels; "
                             "head only), on every view and on the noisy views only (an ideal noise gate)")
    parser.add_argument("--nlm", nargs="*", type=float, default=[],
                        help="also each shipped model reading every uploaded slice (clean and noisy) denoised by "
                             "non-local means of this strength (of 255) before the serving path")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch
    from PIL import Image

    from diseaseid.memory import keep_freed_memory
    from diseaseid.serving.predictor import Predictor, shipped_weights
    from diseaseid.train.data import load_task_data

    torch.set_num_threads(args.threads)
    keep_freed_memory()  # batches of 128 slices: half the time went to mapping and unmapping activations
    _, val, _ = load_task_data("tumor")
    raws = [np.asarray(Image.open(val.root / f).convert("L"), dtype=np.float32) for f in val.files]
    truth = np.asarray(val.labels)
    start = time.perf_counter()
    seen = views(raws, args.levels, args.draws)
    print(f"{len(raws)} validation slices, {args.draws} draws per level, decoded in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    nlm_views: dict[float, dict[str, np.ndarray]] = {}  # computed at the first model, read again by the next
    for role in args.roles:
        predictor = Predictor.from_weights(shipped_weights("tumor", role), runtime="torch")
        model = predictor.model.eval()
        shipped = {k: v.detach().clone() for k, v in model.state_dict().items()}
        with torch.inference_mode():
            print(line(f"{role} ({predictor.version})", predictor, seen, truth, args.levels, args.draws), flush=True)
            for spec in args.mix:
                path, _, weights = spec.partition("@")
                other = _state(path)
                for a in map(float, (weights or "1").split(",")):
                    model.load_state_dict({k: (v.float() * (1 - a) + other[k].float() * a).to(v.dtype)
                                           if v.is_floating_point() else other[k] for k, v in shipped.items()})
                    print(line(f"  {path.split('/')[-2] if '/' in path else path} x{a}", predictor, seen, truth,
                               args.levels, args.draws), flush=True)
                model.load_state_dict(shipped)
            for sigma in args.smooth:
                smoothed = {k: smooth(v, sigma) for k, v in seen.items()}
                print(line(f"  smoothed {sigma:g} px", predictor, smoothed, truth, args.levels, args.draws),
                      flush=True)
                gated = {**smoothed, "clean": seen["clean"]}
                print(line(f"  smoothed {sigma:g} px if noisy", predictor, gated, truth, args.levels, args.draws),
                      flush=True)
            for strength in args.nlm:
                if strength not in nlm_views:
                    nlm_views[strength] = views(raws, args.levels, args.draws, nlm(strength))
                denoised = nlm_views[strength]
                print(line(f"  denoised (NLM {strength:g})", predictor, denoised, truth, args.levels, args.draws),
                      flush=True)
            if args.median:
                from diseaseid.models.median import with_input_median

                median = Predictor.from_weights(shipped_weights("tumor", role), runtime="torch")
                with_input_median(median.model)
                print(line("  with the median, as shipped", median, seen, truth, args.levels, args.draws), flush=True)
    for path in args.weights:
        with torch.inference_mode():
            predictor = Predictor.from_weights(path, runtime="torch")
            print(line(f"{path} ({predictor.version})", predictor, seen, truth, args.levels, args.draws), flush=True)


if __name__ == "__main__":
    main()
