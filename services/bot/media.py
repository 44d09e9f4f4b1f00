"""From a Telegram message to the bytes we forward: which file, whether we accept it, what it really is."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import Message

from services.bot.views import Upload

ACCEPTED_MIME = {"image/jpeg", "image/jpg", "image/pjpeg", "image/png", "application/dicom", "image/dicom"}
# Clients label DICOM files in many ways; these we download and then judge by their bytes.
UNSURE_MIME = {"", "application/octet-stream", "application/x-dicom", "binary/octet-stream"}
ACCEPTED_SUFFIXES = {".jpg", ".jpeg", ".png", ".dcm", ".dicom", ".ima", ""}
DICOM_SUFFIXES = {".dcm", ".dicom", ".ima"}


class Rejection(Exception):
    """The user sent something we will not analyse; `key` names the text that explains why."""

    def __init__(self, key: str, **values: object):
        super().__init__(key)
        self.key, self.values = key, values


@dataclass(frozen=True)
class ImageRef:
    """A file in a message that we intend to analyse."""

    file_id: str
    file_size: int | None
    filename: str
    mime: str = ""
    declared_dicom: bool = False
    extra: dict = field(default_factory=dict, compare=False)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f}".rstrip("0").rstrip(".")


def image_ref(message: Message, max_bytes: int) -> ImageRef:
    """The largest photo size, or the document if its declared type can be an MRI slice."""
    if message.photo:
        photo = message.photo[-1]  # Telegram lists sizes smallest first
        ref = ImageRef(photo.file_id, photo.file_size, "slice.jpg", "image/jpeg")
    elif message.document is not None:
        doc = message.document
        name = doc.file_name or "slice"
        mime = (doc.mime_type or "").lower()
        suffix = PurePosixPath(name).suffix.lower()
        if mime not in ACCEPTED_MIME and not (mime in UNSURE_MIME and suffix in ACCEPTED_SUFFIXES):
            raise Rejection("wrong_document", kind=mime or suffix or "unknown")
        declared_dicom = "dicom" in mime or suffix in DICOM_SUFFIXES
        ref = ImageRef(doc.file_id, doc.file_size, name, mime, declared_dicom)
    else:
        raise Rejection("other_reply")
    if ref.file_size is not None and ref.file_size > max_bytes:
        raise Rejection("too_large", size=_mb(ref.file_size), limit=_mb(max_bytes))
    return ref


def sniff(content: bytes) -> str | None:
    """The media type the bytes really have (JPEG, PNG or DICOM with its 'DICM' preamble), or None."""
    if content[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if content[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if content[128:132] == b"DICM":
        return "application/dicom"
    return None


_DEFAULT_NAMES = {"image/jpeg": "slice.jpg", "image/png": "slice.png", "application/dicom": "slice.dcm"}


async def download(bot: Bot, ref: ImageRef, max_bytes: int) -> Upload:
    try:
        buffer = await bot.download(ref.file_id, destination=io.BytesIO())
    except TelegramBadRequest as exc:
        if "too big" in exc.message.lower():
            size = _mb(ref.file_size or max_bytes + 1)
            raise Rejection("too_large", size=size, limit=_mb(max_bytes)) from exc
        raise
    assert buffer is not None
    content = buffer.getvalue()
    if len(content) > max_bytes:
        raise Rejection("too_large", size=_mb(len(content)), limit=_mb(max_bytes))
    content_type = sniff(content)
    if content_type is None:
        if not ref.declared_dicom or not content:
            raise Rejection("corrupt_image")
        content_type = "application/dicom"  # a DICOM without preamble: let the service judge it
    name = ref.filename if PurePosixPath(ref.filename).suffix else _DEFAULT_NAMES[content_type]
    return Upload(filename=name, content=content, content_type=content_type)
