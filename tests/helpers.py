"""Helpers every test package shares: encoded images, free ports, a loopback HTTP server and DICOM files built
from pixels.

Imported, never collected (no ``test_`` prefix); only the standard library, NumPy, Pillow and pydicom, so any
test can use them without loading torch.
"""
from __future__ import annotations

import http.server
import io
import json
import socket
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

PATIENT_NAME = "Testpatient^Secret"
PATIENT_ID = "PID-0042-SECRET"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler for :func:`http_server` that logs nothing; :meth:`reply` answers one request."""

    def reply(self, status: int, body: object, content_type: str = "application/json") -> None:
        """``body`` (bytes, text, or anything else as JSON) with ``status``."""
        if isinstance(body, str):
            body = body.encode()
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def http_server(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served by a thread on a free loopback port; yields the server's URL, stops it afterwards."""
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()


def png_bytes(image: np.ndarray | Image.Image | Path | str, mode: str | None = None, **save: object) -> bytes:
    """``image`` (an array, a PIL image or an image file) as PNG bytes; ``mode`` reads the array as that PIL
    mode, ``save`` goes to PIL's PNG writer (e.g. ``optimize=False``)."""
    if isinstance(image, str | Path):
        image = Image.open(image)
    elif isinstance(image, np.ndarray):
        image = Image.fromarray(image, mode) if mode else Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG", **save)
    return buf.getvalue()


def bomb_png(side: int) -> bytes:
    """A valid 1-bit PNG of ``side`` x ``side`` zeros: tiny on disk, ``side**2`` pixels once decoded."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
    row = b"\0" * (1 + (side + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def make_dicom(pixels, *, photometric: str = "MONOCHROME2", bits_stored: int = 16, slope: float | None = None,
               intercept: float | None = None, window: tuple[float, float] | None = None,
               voi_lut: list[int] | None = None, sop_class: str = MR_IMAGE_STORAGE,
               with_pixels: bool = True, preamble: bool = True, **tags: object) -> bytes:
    """A DICOM file (MR Image Storage by default) holding ``pixels`` (HxW, or FxHxW for multi-frame), with
    any further ``tags`` by keyword (e.g. ``InstanceNumber=3``; a ``SOPInstanceUID`` goes into the file meta
    too).

    Patient tags are set to recognisable values so tests can check that they never come back.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = tags.get("SOPInstanceUID") or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19700101"
    ds.Modality = "MR"
    if with_pixels:
        ds.set_pixel_data(pixels, photometric, bits_stored)
        if slope is not None or intercept is not None:
            ds.RescaleSlope = slope if slope is not None else 1
            ds.RescaleIntercept = intercept if intercept is not None else 0
        if window is not None:
            ds.WindowCenter, ds.WindowWidth = window
        if voi_lut is not None:
            item = Dataset()
            item.LUTDescriptor = [len(voi_lut), 0, 16]
            item.LUTData = np.asarray(voi_lut, np.uint16).tobytes()  # OW: raw little-endian words
            ds.VOILUTSequence = pydicom.Sequence([item])
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    return data if preamble else data[132:]
