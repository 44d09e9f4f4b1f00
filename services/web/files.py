"""What a person uploaded, as the list of slices to send: zip files unpacked, a study put in stack order.

A study is read lowest slice first (the inference service reads slice positions, and the dementia head was
trained so). People export slices with numbered names (``slice_2``, ``slice_10``) and PACS exports DICOM
series under arbitrary names, so the order is the files' names compared number by number, or, when every file
is DICOM with an instance number, that number. Nothing here decodes an image: the inference service is the
one judge of what is a readable slice; the page's server only refuses what it cannot forward (too many files,
too many bytes, a broken zip) before anything is sent.
"""
from __future__ import annotations

import io
import logging
import re
import zipfile
from dataclasses import dataclass

from services.web.client import Upload

log = logging.getLogger("services.web")

ZIP_MAGIC = b"PK\x03\x04"
_NUMBER = re.compile(r"(\d+)")


class UploadRefused(Exception):
    """The upload cannot be sent as it is: ``key`` names the text that says why (services.web.texts), with
    ``values``; ``status`` and ``code`` are the HTTP answer's."""

    def __init__(self, key: str, *, status: int, code: str, **values: object):
        super().__init__(key)
        self.key, self.status, self.code, self.values = key, status, code, values


@dataclass(frozen=True)
class Limits:
    max_files: int
    max_file_bytes: int
    max_total_bytes: int


def natural_key(name: str) -> tuple:
    """``slice_2`` before ``slice_10``: digits compare as numbers, the rest case-insensitively."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower())
                 for part in _NUMBER.split(name) if part)


def is_dicom(data: bytes) -> bool:
    return data[128:132] == b"DICM"


def dicom_instance_number(data: bytes) -> int | None:
    """The InstanceNumber tag (0020,0013), read without the pixels; None when it is missing or unreadable.
    Never logged: only the number's order is used."""
    import pydicom  # only for DICOM series: the page loads it on first need

    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["InstanceNumber"])
        value = ds.get("InstanceNumber")
        return int(value) if value is not None and str(value).strip() != "" else None
    except Exception:  # noqa: BLE001 - any unreadable header just means "no number"
        return None


def _zip_entries(upload: Upload, limits: Limits, budget: int) -> list[Upload]:
    """The files in a zip, each at most ``limits.max_file_bytes``, all together at most ``budget`` bytes."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(upload.content))
        infos = [i for i in archive.infolist() if not i.is_dir() and not _hidden(i.filename)]
        if len(infos) > limits.max_files:
            raise UploadRefused("error_too_many_files", status=422, code="too_many_files",
                                limit=limits.max_files, n=len(infos))
        entries = []
        for info in infos:
            name = info.filename.rsplit("/", 1)[-1]
            # The declared size can lie (a zip bomb): read one byte past the limit and look.
            with archive.open(info) as member:
                content = member.read(limits.max_file_bytes + 1)
            if len(content) > limits.max_file_bytes:
                raise UploadRefused("error_file_too_large", status=413, code="too_large", name=name,
                                    limit=_mb(limits.max_file_bytes))
            budget -= len(content)
            if budget < 0:
                raise UploadRefused("error_upload_too_large", status=413, code="too_large",
                                    limit=_mb(limits.max_total_bytes))
            entries.append(Upload(name, content))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError,
            ValueError, OSError):
        # Encrypted, damaged, or compressed by a method Python lacks.
        raise UploadRefused("error_bad_zip", status=422, code="invalid_image", name=upload.name) from None
    if not entries:
        raise UploadRefused("error_empty_zip", status=422, code="invalid_image", name=upload.name)
    return entries


def _hidden(path: str) -> bool:
    """macOS resource forks, dot files and DICOMDIR indexes are no slices."""
    parts = path.split("/")
    return any(p.startswith(".") or p == "__MACOSX" for p in parts) or parts[-1].upper() == "DICOMDIR"


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g}"


def slices_of(uploads: list[Upload], limits: Limits) -> list[Upload]:
    """The slices to send, in stack order: each zip replaced by its files, each file within the limits."""
    if not uploads:
        raise UploadRefused("error_no_files", status=400, code="malformed_request")
    slices: list[Upload] = []
    total = 0
    for upload in uploads:
        if upload.content.startswith(ZIP_MAGIC):
            slices.extend(_zip_entries(upload, limits, limits.max_total_bytes - total))
        else:
            if len(upload.content) > limits.max_file_bytes:
                raise UploadRefused("error_file_too_large", status=413, code="too_large", name=upload.name,
                                    limit=_mb(limits.max_file_bytes))
            slices.append(upload)
        total = sum(len(s.content) for s in slices)
        if total > limits.max_total_bytes:
            raise UploadRefused("error_upload_too_large", status=413, code="too_large",
                                limit=_mb(limits.max_total_bytes))
        if len(slices) > limits.max_files:
            raise UploadRefused("error_too_many_files", status=422, code="too_many_files",
                                limit=limits.max_files, n=len(slices))
    return stack_order(slices)


def stack_order(slices: list[Upload]) -> list[Upload]:
    """A DICOM series by instance number when every file has one; anything else by name, number-aware."""
    if len(slices) < 2:
        return slices
    if all(is_dicom(s.content) for s in slices):
        numbers = [dicom_instance_number(s.content) for s in slices]
        if all(n is not None for n in numbers):
            order = sorted(range(len(slices)), key=lambda i: (numbers[i], natural_key(slices[i].name)))
            return [slices[i] for i in order]
    return sorted(slices, key=lambda s: natural_key(s.name))
