"""A real, throw-away Orthanc for tests: Debian's ``orthanc`` with its DICOMweb plugin, on free loopback
ports, with a temporary configuration and storage, no authentication, and series stable after one second.

    with OrthancServer() as orthanc:
        httpx.get(orthanc.url + "/system")
        orthanc.stop(); orthanc.start()   # same ports, same storage: a restart
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from services.pacs.orthanc_config import config, dicomweb_plugin
from tests.helpers import free_port

ORTHANC = shutil.which("Orthanc")
DICOMWEB_PLUGIN = dicomweb_plugin()


def missing() -> str | None:
    """Why a real Orthanc cannot run here, or None."""
    if ORTHANC is None:
        return "Orthanc not installed: apt-get install orthanc orthanc-dicomweb (.ci/setup.d/orthanc.sh)"
    if DICOMWEB_PLUGIN is None:
        return "Orthanc's DICOMweb plugin not installed: apt-get install orthanc-dicomweb"
    return None


class OrthancServer:
    """The configuration ``make up`` writes (services.pacs.orthanc_config), on a free port, no DICOM listener."""

    def __init__(self, name: str = "diseaseid-test", stable_age_s: int = 1):
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="diseaseid-orthanc-")
        self.dir = Path(self._dir.name)
        self.log_path = self.dir / "orthanc.log"
        self.proc: subprocess.Popen | None = None
        (self.dir / "db").mkdir()
        self.config = self.dir / "orthanc.json"
        self.config.write_text(json.dumps(config(data_dir=self.dir, http_port=self.port, stable_age_s=stable_age_s,
                                                 name=name)))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> OrthancServer:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([ORTHANC, str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}:\n{self.log_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/system", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Orthanc not up after {timeout:.0f} s:\n{self.log_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # Orthanc closes its database cleanly on SIGTERM
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> OrthancServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
