"""Training-curve and confusion-matrix figures (PNG)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def training_curve(history: list[dict], path: str | Path, title: str = "") -> Path:
    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(6, 3.6), dpi=110)
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", color="tab:gray", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss")
    ax2 = ax1.twinx()
    for key, color in (("accuracy", "tab:blue"), ("macro_f1", "tab:green"), ("balanced_accuracy", "tab:orange"),
                       ("subject_balanced_accuracy", "tab:red")):
        if key in history[0]:
            ax2.plot(epochs, [h[key] for h in history], "o-", color=color, label=f"val {key}")
    ax2.set_ylabel("validation")
    ax2.set_ylim(0, 1)
    lines = ax1.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    labels = ax1.get_legend_handles_labels()[1] + ax2.get_legend_handles_labels()[1]
    ax2.legend(lines, labels, loc="lower right", fontsize=7)
    ax1.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def confusion_matrix_plot(matrix: list[list[int]], classes, path: str | Path, title: str = "") -> Path:
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=110)
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
