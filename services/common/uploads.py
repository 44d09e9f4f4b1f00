"""Reading multipart uploads with a size limit, then decoding them off the event loop, a few at a time.

The request body as a whole is capped while it streams in by
:class:`~services.common.body_limit.BodyLimitMiddleware`; :func:`read_upload_bytes` caps each file again
(a study body may be larger than any one of its files may be).

Bytes are a poor measure of cost: a 182 KB PNG can hold 16 million pixels. :class:`DecodeGate` reads each
upload's header first (cheap, in a worker thread) and lets images over ``heavy_decode_pixels`` decode only
``max_heavy_decodes`` at a time per process. One that cannot start within ``decode_wait_s`` is refused with
503 ``busy`` and ``Retry-After``, so a flood of large images neither queues up without bound (each holding
its bytes and, once decoding, its pixels) nor delays the ordinary slices, which never wait for the gate.
After each large decode the freed memory is handed back to the OS (``diseaseid.memory``: the policy).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartParser

from diseaseid.memory import release_freed_memory
from services.common.errors import Busy, PayloadTooLarge
from services.common.settings import ServiceSettings

if TYPE_CHECKING:
    from types import ModuleType

    from services.common.images import DecodedImage

Runner = Callable[..., Awaitable[Any]]
T = TypeVar("T")


def _images() -> ModuleType:
    """services.common.images, imported at the first decode rather than with this module: it loads the
    preprocessing and with it torch, which an app that never decodes (the web page, services/web) must not."""
    from services.common import images

    return images

CHUNK = 1 << 20


def keep_uploads_in_memory(max_body_bytes: int) -> None:
    """Starlette spools uploaded files over 1 MB to a temporary file; medical images must never touch the
    disk. The body limit already caps memory, so let every accepted upload stay in memory.

    (``spool_max_size`` is a class attribute of Starlette's parser: the setting is process-wide.)"""
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, max_body_bytes)


async def read_upload_bytes(upload: UploadFile, max_bytes: int) -> bytes:
    """All bytes of one uploaded file; :class:`PayloadTooLarge` (413) as soon as it passes ``max_bytes``."""
    chunks: list[bytes] = []
    total = 0
    while chunk := await upload.read(CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLarge(f"the file is over the limit of {max_bytes:,} bytes")
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _decode_heavy(data: bytes, settings: ServiceSettings, content_type: str | None,
                  filename: str | None) -> DecodedImage:
    try:
        return _images().decode_image_bytes(data, settings, content_type=content_type, filename=filename)
    finally:
        release_freed_memory()


def _decode_unless_large(data: bytes, settings: ServiceSettings, content_type: str | None,
                         filename: str | None) -> DecodedImage | None:
    """Probe; decode at once when the image is not large, else None (it waits for a slot of the gate)."""
    images = _images()
    probe = images.probe_image(data, settings, content_type=content_type, filename=filename)
    if probe.pixels > settings.heavy_decode_pixels:
        return None
    return images.decode_image_bytes(data, settings, content_type=content_type, filename=filename)


def _decode_then(data: bytes, settings: ServiceSettings, content_type: str | None, filename: str | None,
                 then: Callable[[DecodedImage], T]) -> tuple[DecodedImage, float, T] | None:
    """:func:`_decode_unless_large`, then ``then`` on the image in the same thread: (image, decode seconds,
    its result), or None for a large image (it waits for the gate)."""
    start = time.perf_counter()
    decoded = _decode_unless_large(data, settings, content_type, filename)
    if decoded is None:
        return None
    return decoded, time.perf_counter() - start, then(decoded)


class DecodeGate:
    """At most ``settings.max_heavy_decodes`` large images decoding at once in this process."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self._slots = asyncio.Semaphore(settings.max_heavy_decodes)
        self.refused = 0  # large decodes turned away as busy, for tests and benchmarks

    async def decode_then(self, data: bytes, then: Callable[[DecodedImage], T], *,
                          content_type: str | None = None, filename: str | None = None,
                          run: Runner = run_in_threadpool) -> tuple[DecodedImage, float, T]:
        """:meth:`decode`, then ``then`` (a forward pass) on the image: (image, decode seconds, its result). A
        slice that is not large takes one trip to the pool for both (a trip costs a lone request a few tenths
        of a millisecond); a large one is decoded through the gate first, then ``then`` runs in a trip of its
        own. Raises what :meth:`decode` and ``then`` raise."""
        _images().refuse_oversized_png(data, self.settings)
        done = await run(_decode_then, data, self.settings, content_type, filename, then)
        if done is not None:
            return done
        start = time.perf_counter()
        image = await self._decode_large(data, content_type, filename, run)
        decode_s = time.perf_counter() - start
        return image, decode_s, await run(then, image)

    async def decode(self, data: bytes, *, content_type: str | None = None, filename: str | None = None,
                     run: Runner = run_in_threadpool) -> DecodedImage:
        """Probe, wait for a slot if the image is large, decode; ``run`` puts the work on a thread pool.

        Raises what :func:`decode_image_bytes` raises, and :class:`Busy` (503) when no slot freed up in
        time."""
        settings, images = self.settings, _images()
        images.refuse_oversized_png(data, settings)
        # One trip to the pool for the common case: a slice that is not large is decoded right after its probe.
        decoded = await run(_decode_unless_large, data, settings, content_type, filename)
        if decoded is not None:
            return decoded
        return await self._decode_large(data, content_type, filename, run)

    async def _decode_large(self, data: bytes, content_type: str | None, filename: str | None,
                            run: Runner) -> DecodedImage:
        """A large image: wait for a slot (:class:`Busy` when none frees up in time), then decode it."""
        settings = self.settings
        try:
            await asyncio.wait_for(self._slots.acquire(), settings.decode_wait_s or 0.001)
        except TimeoutError:
            self.refused += 1
            raise Busy("the server is busy decoding other large images; retry in a moment (an MRI slice "
                       "at its native size, a few hundred pixels a side, never waits)") from None
        try:
            return await run(_decode_heavy, data, settings, content_type, filename)
        finally:
            self._slots.release()


async def read_image_upload(upload: UploadFile, settings: ServiceSettings, gate: DecodeGate) -> DecodedImage:
    """Read (size-limited) and decode one upload in a worker thread -> :class:`DecodedImage`.

    Raises :class:`PayloadTooLarge` (413), ``UnsupportedMediaType`` (415), ``InvalidImage`` or
    ``ImageTooLarge`` (422), :class:`Busy` (503); the installed error handlers turn them into the JSON error
    body. The ``gate`` (one per app) rations large images.
    """
    data = await read_upload_bytes(upload, settings.max_upload_bytes)
    return await gate.decode(data, content_type=upload.content_type, filename=upload.filename)
