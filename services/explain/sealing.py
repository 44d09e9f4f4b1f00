"""Images, heatmaps and raw maps are sealed before they reach Redis, which keeps them on disk.

Redis persists what it holds (the append-only file and ``dump.rdb`` under ``.data/redis`` in ``make up``, the
``redis-data`` volume in compose) so that queued and finished jobs survive a restart. What the explain service
writes there would then be a readable copy of every patient's slice and its maps. So the API seals each job's
pixels before it queues them, the worker seals every result file (PNG, .npy) before it stores it, and only
the API and the workers, which hold the key, can open them again: AES-256-GCM (``cryptography``'s ``AESGCM``)
with a fresh 96-bit nonce per value, and the value's place as associated data (``result:<job>:<file>``), so
a sealed file cannot be passed off as another job's. A sealed value is ``dzs1 | nonce | ciphertext + tag``.

The key, 32 bytes, from the first of:

1. ``DISEASEID_STORE_KEY``: urlsafe base64 (``python -m services.explain.sealing new-key`` prints one). Set it
   whenever the API and the workers do not share a disk (workers on other machines).
2. ``DISEASEID_STORE_KEY_FILE``, else ``$DISEASEID_DATA_DIR/keys/store.key`` (``make up``: ``.data/keys``),
   else ``<cache>/keys/store.key``: read when it exists, else created there with mode 0600 (exclusively: of
   two processes starting at once, one writes it and both use it). compose shares it between the API and the
   workers through the ``explain-keys`` volume.

What stays in clear: RQ's bookkeeping (job ids, states, timings) and each job's JSON summary (the prediction,
its probabilities, the maps' value ranges): numbers, no pixels. A key that changes makes the stored jobs
unreadable (a worker then fails the job, the API answers 404 for the files); they expire with their TTL.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import os
import secrets
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"dzs1"
NONCE_BYTES = 12
KEY_BYTES = 32
PAYLOAD = "payload"  # the job's pixels (the job id is not known when the API seals them)


class SealError(ValueError):
    """A sealed value could not be opened: another key, or the bytes were changed."""


class StoreKeyError(ValueError):
    """The configured key is not 32 bytes of urlsafe base64."""


def result_context(job_id: str, name: str) -> str:
    return f"result:{job_id}:{name}"


def new_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def parse_key(text: str) -> bytes:
    """Urlsafe base64 (padding optional) of 32 bytes; the message never shows the key."""
    text = text.strip()
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise StoreKeyError("DISEASEID_STORE_KEY is not urlsafe base64; make one with "
                        "`python -m services.explain.sealing new-key`") from None
    if len(key) != KEY_BYTES:
        raise StoreKeyError(f"DISEASEID_STORE_KEY must hold {KEY_BYTES} bytes, not {len(key)}; make one with "
                        "`python -m services.explain.sealing new-key`")
    return key


def default_key_file() -> Path:
    data_dir = os.environ.get("DISEASEID_DATA_DIR")
    if data_dir:
        return Path(data_dir) / "keys" / "store.key"
    from diseaseid.paths import cache_dir

    return cache_dir() / "keys" / "store.key"


def load_or_create_key_file(path: Path) -> bytes:
    """The key in ``path``; a new one written there (0600, in a 0700 folder) when there is none."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Written whole to a private temporary file, then linked into place: a reader never sees half a key,
        # and of two processes creating it at once the second one's link fails and it reads the first's.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(new_key() + "\n")
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    return parse_key(path.read_text())


class Sealer:
    """Seals and opens values with one key (AES-256-GCM)."""

    def __init__(self, key: bytes):
        if len(key) != KEY_BYTES:
            raise StoreKeyError(f"a store key is {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_settings(cls, key: str = "", key_file: str = "") -> Sealer:
        if key:
            return cls(parse_key(key))
        return cls(load_or_create_key_file(Path(key_file) if key_file else default_key_file()))

    @staticmethod
    def is_sealed(blob: bytes) -> bool:
        return isinstance(blob, (bytes, bytearray)) and bytes(blob[:len(MAGIC)]) == MAGIC

    def seal(self, data: bytes, context: str) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return MAGIC + nonce + self._aead.encrypt(nonce, bytes(data), context.encode())

    def open(self, blob: bytes, context: str) -> bytes:
        """The value sealed under ``context``; :class:`SealError` when the key or the bytes do not match."""
        if not self.is_sealed(blob) or len(blob) < len(MAGIC) + NONCE_BYTES + 16:
            raise SealError("not a sealed value")
        nonce = bytes(blob[len(MAGIC):len(MAGIC) + NONCE_BYTES])
        try:
            return self._aead.decrypt(nonce, bytes(blob[len(MAGIC) + NONCE_BYTES:]), context.encode())
        except InvalidTag:
            raise SealError("the sealed value does not open with this key (another key, or changed bytes)") from None


@lru_cache(maxsize=1)
def process_sealer() -> Sealer:
    """This process's sealer, from the explain settings (one key per process)."""
    from services.explain.settings import get_settings

    settings = get_settings()
    return Sealer.from_settings(settings.store_key.get_secret_value(), settings.store_key_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.explain.sealing", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("new-key", help="print a new key for DISEASEID_STORE_KEY")
    args = parser.parse_args(argv)
    if args.command == "new-key":
        print(new_key())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
