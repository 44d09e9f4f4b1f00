"""Shared fixtures for service tests: free ports and real uvicorn servers in subprocesses.

:func:`run_server` starts any ``module:app`` with the given environment on a free loopback port, waits
until a readiness path answers 200, and always ends the process (and its process group) when the block
exits, also on failure. Other service tests reuse it::

    from tests.services.conftest import run_server
    with run_server("services.explain.api.main:app", {"REDIS_URL": url}, ready_path="/healthz") as server:
        httpx.get(server.url + "/healthz")
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
TEST_KEYS = ("test-key-alpha-123", "test-key-beta-456")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    url: str
    proc: subprocess.Popen
    log_path: Path

    def log_text(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)  # the group we created for it: uvicorn and anything it spawned
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def run_server(app: str, env: dict[str, str] | None = None, *, ready_path: str = "/healthz",
               timeout: float = 90.0, args: tuple[str, ...] = ()) -> Iterator[ServerProcess]:
    """``uvicorn <app>`` on a free port with ``env`` added to ours; yields once ``ready_path`` answers 200.

    Torch uses one thread unless ``env`` says otherwise (the CI box has two cores for everything).
    """
    port = free_port()
    full_env = {**os.environ, "DISEASEID_TORCH_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    log = tempfile.NamedTemporaryFile(prefix="server-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    server = ServerProcess(f"http://127.0.0.1:{port}", proc, Path(log.name))
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{app} exited with {proc.returncode}:\n{server.log_text()[-3000:]}")
            try:
                if httpx.get(server.url + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{app} not ready after {timeout:.0f} s:\n{server.log_text()[-3000:]}")
            time.sleep(0.1)
        yield server
    finally:
        _stop(proc)
        log.close()
        os.unlink(log.name)


def fixture_bytes(task: str, cls: str, index: int = 0) -> bytes:
    """The bytes of one fixture slice, e.g. ``fixture_bytes("tumor", "glioma")``."""
    return sorted((FIXTURES / task / cls).glob("*.jpg"))[index].read_bytes()


@pytest.fixture(scope="session")
def inference_server() -> Iterator[ServerProcess]:
    """The inference service in development mode (no API keys)."""
    env = {"DISEASEID_API_KEYS": ""}
    with run_server("services.inference.main:app", env, ready_path="/readyz") as server:
        yield server


@pytest.fixture(scope="session")
def inference_server_auth() -> Iterator[ServerProcess]:
    """The inference service with two API keys configured (``TEST_KEYS``)."""
    env = {"DISEASEID_API_KEYS": ",".join(TEST_KEYS)}
    with run_server("services.inference.main:app", env, ready_path="/readyz") as server:
        yield server


@pytest.fixture(scope="session")
def inference_client(inference_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=inference_server.url, timeout=60) as c:
        yield c


PATIENT_NAME = "Testpatient^Secret"
PATIENT_ID = "PID-0042-SECRET"


def make_dicom(pixels, *, photometric: str = "MONOCHROME2", bits_stored: int = 16, slope: float | None = None,
               intercept: float | None = None, window: tuple[float, float] | None = None,
               voi_lut: list[int] | None = None, sop_class: str = "1.2.840.10008.5.1.4.1.1.4",
               with_pixels: bool = True, preamble: bool = True) -> bytes:
    """A DICOM file (MR Image Storage by default) holding ``pixels`` (HxW, or FxHxW for multi-frame).

    Patient tags are set to recognisable values so tests can check that they never come back.
    """
    import io

    import numpy as np
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
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
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    return data if preamble else data[132:]


@pytest.fixture(scope="module")
def redis():
    """A real Redis server per test module (tests of the explain queue and store)."""
    from redis import Redis

    from tests.services.redis_server import RedisServer

    with RedisServer() as server:
        client = Redis.from_url(server.url)
        yield client
        client.close()


@pytest.fixture
def queue(redis):
    """The explain queue on an empty database."""
    from rq import Queue

    redis.flushdb()
    return Queue("explain", connection=redis)

