"""Faithfulness of heatmaps, measured: deletion and insertion curves (Petsiuk et al. 2018, "RISE"; the
"pixel-flipping" of Bach et al. 2015 and Samek et al. 2017).

Pixels are ranked by a map, most relevant first (in 8 x 8 squares, see ``PATCH``). Deletion turns them
black (the background of an MRI slice) a fraction at a time and follows the probability of the explained
class: a faithful map makes it fall fast (low area under the curve). Insertion starts from a blurred slice
and puts the original pixels back in the same order: a faithful map makes the probability rise fast (high
area). A random ranking is the floor to beat.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
from PIL import Image, ImageFilter

from diseaseid.data.tensors import normalize

BLUR_RADIUS = 5.0  # insertion's starting canvas, as RISE (Gaussian, sigma 5)
# Perturb 8 x 8 squares, not single pixels (the "region perturbation" of Samek et al. 2017): blackening
# scattered single pixels adds salt-and-pepper noise that no slice has, and a random order does that most, so
# pixel-wise deletion ranks a random map above every real one (measured on the tumor teacher).
PATCH = 8


@dataclass
class Curves:
    """Probability of the explained class after removing (deletion) or restoring (insertion) the top
    ``fractions`` of pixels; one row per image."""

    fractions: np.ndarray
    deletion: np.ndarray  # N x (steps + 1)
    insertion: np.ndarray

    @staticmethod
    def area(curve: np.ndarray, fractions: np.ndarray) -> np.ndarray:
        """Area under each row (trapezoid over the fraction axis 0..1)."""
        return ((curve[:, 1:] + curve[:, :-1]) * 0.5 * np.diff(fractions)).sum(1)

    def summary(self) -> dict:
        out = {}
        for name in ("deletion", "insertion"):
            auc = self.area(getattr(self, name), self.fractions)
            out[f"{name}_auc"] = float(auc.mean())
            out[f"{name}_sem"] = float(auc.std(ddof=1) / np.sqrt(len(auc))) if len(auc) > 1 else 0.0
            out[f"{name}_curve"] = [float(v) for v in getattr(self, name).mean(0)]
        return out


def ranking(saliency: np.ndarray, rng: np.random.Generator, patch: int = 1) -> np.ndarray:
    """Rank of each pixel (0 = most relevant) by the map summed over ``patch`` x ``patch`` squares (all pixels
    of a square share its rank position, in scan order); ties (e.g. the zeros of a Grad-CAM map) are broken at
    random."""
    h, w = saliency.shape
    if patch > 1:
        if h % patch or w % patch:
            raise ValueError(f"patch size {patch} does not divide the map size {h} x {w}")
        pooled = saliency.astype(np.float64).reshape(h // patch, patch, w // patch, patch).sum((1, 3))
        coarse = ranking(pooled, rng)
        # pixel rank = its square's rank * patch^2 + its position inside the square
        inner = np.arange(patch * patch).reshape(patch, patch)
        rank = coarse[:, None, :, None] * patch * patch + inner[None, :, None, :]
        return rank.reshape(h, w)
    flat = saliency.astype(np.float64).ravel()
    order = np.lexsort((rng.random(flat.size), -flat))
    rank = np.empty(flat.size, np.int64)
    rank[order] = np.arange(flat.size)
    return rank.reshape(saliency.shape)


def blurred(image: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(BLUR_RADIUS)))


@torch.no_grad()
def class_probability(model: nn.Module, images: np.ndarray, targets: np.ndarray, batch_size: int,
                      device: torch.device) -> np.ndarray:
    out = []
    for i in range(0, len(images), batch_size):
        logits = model(normalize(images[i:i + batch_size], device)).float()
        probs = torch.softmax(logits, 1)
        t = torch.as_tensor(targets[i:i + batch_size], device=probs.device).view(-1, 1)
        out.append(probs.gather(1, t)[:, 0].cpu().numpy())
    return np.concatenate(out)


def perturbation_curves(model: nn.Module, images: np.ndarray, saliency: np.ndarray, targets: np.ndarray,
                        steps: int = 16, batch_size: int = 64, seed: int = 0, patch: int = PATCH) -> Curves:
    """Deletion and insertion curves of one method over a batch: ``images`` N x H x W x 3 uint8, ``saliency``
    N x H x W (higher = more relevant), ``targets`` the explained class per image. Pixels go in ``patch`` x
    ``patch`` squares ranked by the map's sum over them."""
    device = next(model.parameters()).device
    rng = np.random.default_rng(seed)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    deletion = np.zeros((len(images), steps + 1))
    insertion = np.zeros((len(images), steps + 1))
    for i, (image, sal, t) in enumerate(zip(images, saliency, targets, strict=False)):
        rank = ranking(sal, rng, patch)
        counts = np.round(fractions * rank.size).astype(np.int64)
        masks = (rank[None] < counts[:, None, None])[..., None]  # (steps + 1) x H x W x 1
        removed = np.where(masks, np.uint8(0), image[None])
        restored = np.where(masks, image[None], blurred(image)[None])
        batch = np.concatenate([removed, restored])
        probs = class_probability(model, batch, np.full(len(batch), t), batch_size, device)
        deletion[i], insertion[i] = probs[:steps + 1], probs[steps + 1:]
    return Curves(fractions, deletion, insertion)


@dataclass
class Evaluation:
    task: str
    model: str
    n: int
    steps: int
    composite: str
    patch: int = PATCH
    version: str = ""  # the weights' version (model card), so a table names what it measured
    source: str = ""  # where the slices came from
    results: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def markdown(self) -> str:
        lines = [f"Faithfulness on {self.n} validation slices, task `{self.task}`, model `{self.model}` "
                 f"(weights {self.version or 'unknown'}) "
                 f"(LRP composites: {self.composite}; {self.steps} steps of {self.patch} x {self.patch} px "
                 "squares). Area under the curve of the "
                 "explained class's probability, mean +- standard error; deletion: lower is better, "
                 "insertion: higher is better.", "",
                 "| method | deletion AUC (lower better) | insertion AUC (higher better) | insertion - "
                 "deletion |",
                 "|---|---|---|---|"]
        for method, r in self.results.items():
            lines.append(f"| {method} | {r['deletion_auc']:.3f} +- {r['deletion_sem']:.3f} | "
                         f"{r['insertion_auc']:.3f} +- {r['insertion_sem']:.3f} | "
                         f"{r['insertion_auc'] - r['deletion_auc']:+.3f} |")
        return "\n".join(lines) + "\n"

    def plot(self, path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
        x = np.linspace(0, 1, self.steps + 1)
        for ax, name in zip(axes, ("deletion", "insertion"), strict=False):
            for method, r in self.results.items():
                ax.plot(x, r[f"{name}_curve"], label=f"{method} (AUC {r[f'{name}_auc']:.3f})")
            ax.set_title(f"{name.capitalize()} ({'lower' if name == 'deletion' else 'higher'} is better)")
            ax.set_xlabel("fraction of pixels " + ("removed" if name == "deletion" else "restored"))
            ax.set_ylabel("probability of the explained class")
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"{self.task} / {self.model}: {self.n} validation slices")
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
