"""The default model is read from the cards once, and again only when a card changes on disk (a cost otherwise paid by
every request that names no model asks for it, refused uploads included)."""
from __future__ import annotations

import json
import os

from diseaseid.models import checkpoint
from diseaseid.serving import default_model


def write_card(root, role: str, accuracy: float, mtime_ns: int) -> None:
    (root / "tumor" / f"{role}.safetensors").write_bytes(b"")
    card = root / "tumor" / f"{role}.json"
    card.write_text(json.dumps({"metrics": {"validation": {"accuracy": accuracy}}}))
    os.utime(card, ns=(mtime_ns, mtime_ns))


def test_cards_are_read_once_and_again_when_one_changes(tmp_path, monkeypatch):
    (tmp_path / "tumor").mkdir()
    write_card(tmp_path, "student", 0.90, 1_000_000_000)
    write_card(tmp_path, "teacher", 0.98, 1_000_000_000)
    monkeypatch.setenv("DISEASEID_WEIGHTS", str(tmp_path))
    reads = []
    real = checkpoint.read_card
    monkeypatch.setattr("diseaseid.serving.default.read_card", lambda p: reads.append(p) or real(p))
    assert default_model("tumor").role == "teacher"
    assert len(reads) == 2
    for _ in range(5):
        assert default_model("tumor").role == "teacher"
    assert len(reads) == 2  # cached
    # A new student above the teacher.
    write_card(tmp_path, "student", 0.985, 2_000_000_000)
    assert default_model("tumor").role == "student"
    assert len(reads) == 4
