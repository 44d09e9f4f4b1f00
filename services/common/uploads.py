"""Reading multipart uploads with a size limit, then decoding them off the event loop.

The request body as a whole is capped while it streams in by
:class:`~services.common.body_limit.BodyLimitMiddleware`; :func:`read_upload_bytes` caps each file again
(a study body may be larger than any one of its files may be).
"""
from __future__ import annotations

from fastapi import UploadFile
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartParser

from services.common.errors import PayloadTooLarge
from services.common.images import DecodedImage, decode_image_bytes
from services.common.settings import ServiceSettings

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


async def read_image_upload(upload: UploadFile, settings: ServiceSettings) -> DecodedImage:
    """Read (size-limited) and decode one upload in a worker thread -> :class:`DecodedImage`.

    Raises :class:`PayloadTooLarge` (413), ``UnsupportedMediaType`` (415), ``InvalidImage`` or
    ``ImageTooLarge`` (422); the installed error handlers turn them into the JSON error body.
    """
    data = await read_upload_bytes(upload, settings.max_upload_bytes)
    return await run_in_threadpool(decode_image_bytes, data, settings, content_type=upload.content_type,
                                   filename=upload.filename)
