"""Model cards and weight hashes without PyTorch: what serving an exported graph needs of a shipped model.

A shipped model is ``<stem>.safetensors`` with its card ``<stem>.json`` (diseaseid.models.checkpoint writes
both). The inference service on ONNX Runtime reads cards and hashes weights here, so it never imports torch."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def card_stem(path: str | Path) -> Path:
    """``weights/tumor/student.safetensors`` (or ``.json``, or no suffix) -> ``weights/tumor/student``."""
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def read_card(path: str | Path) -> dict[str, Any]:
    """The card of the weights at ``path`` (any of its suffixes)."""
    return json.loads(card_stem(path).with_suffix(".json").read_text())


def file_sha256(path: str | Path, length: int = 64) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]
