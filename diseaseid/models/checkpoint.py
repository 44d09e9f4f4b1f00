"""Weights as fp16 safetensors plus a model card JSON beside them (``<stem>.safetensors`` + ``<stem>.json``)."""
from __future__ import annotations

import datetime as _dt
import json
import subprocess
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from diseaseid.cards import card_stem, file_sha256, read_card  # noqa: F401  (torch-free; re-exported)
from diseaseid.models._registry import create_model
from diseaseid.paths import REPO_ROOT


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


_stem = card_stem


def save_model(model: nn.Module, path: str | Path, card: dict[str, Any], dtype=torch.float16) -> Path:
    """Write ``<stem>.safetensors`` (fp16 by default; BatchNorm counters stay integer) and ``<stem>.json``."""
    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        tensors[k] = (v.to(dtype) if v.is_floating_point() else v).contiguous()
    weights = stem.with_suffix(".safetensors")
    save_file(tensors, str(weights), metadata={"arch": card.get("arch", "")})
    card = dict(card)
    card.setdefault("date", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    card.setdefault("git_commit", git_commit())
    card.setdefault("preprocess", preprocess_card())
    card["parameters"] = count_parameters(model)
    card["weights_file"] = weights.name
    card["weights_sha256"] = file_sha256(weights)
    card["version"] = card["weights_sha256"][:12]
    stem.with_suffix(".json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    return weights


def preprocess_card(augmentation: dict | None = None) -> dict:
    """The card's pre-processing steps and the training augmentation (``augmentation``: the run's, see
    ``TrainConfig.augmentation_card``; None: the default acquisition augmentation)."""
    from dataclasses import asdict

    from diseaseid.data.augment import AugmentConfig
    from diseaseid.data.preprocess import PREPROCESS

    if augmentation is None:
        augmentation = asdict(AugmentConfig())
    return {**PREPROCESS, "augmentation (training)": augmentation}


def update_card(path: str | Path, **fields) -> dict[str, Any]:
    card = read_card(path)
    card.update(fields)
    _stem(path).with_suffix(".json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    return card


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Build the architecture named in the card and load the weights (as float32) in eval mode."""
    stem = _stem(path)
    card = read_card(stem)
    kwargs = dict(card.get("arch_args", {}))
    kwargs["num_classes"] = len(card["classes"])
    if card["arch"].startswith("lite0"):
        kwargs["pretrained"] = False
    model = create_model(card["arch"], **kwargs)
    state = load_file(str(stem.with_suffix(".safetensors")))
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    model.load_state_dict(state)
    return model.to(device).eval(), card
