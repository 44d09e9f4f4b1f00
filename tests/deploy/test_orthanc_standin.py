"""dev/orthanc: the Orthanc stand-in image's entry point turns the ORTHANC__* variables of docker-compose.yml's
orthanc service into a configuration as the orthancteam/orthanc image does, and Debian's Orthanc runs it.

The image itself is built and run by ``make compose-test`` (pacs check); here its entry point's configuration
is checked against the real program: every setting named exists in Orthanc's own sample configuration, and an
Orthanc started with it answers as compose's service must (its name, DICOMweb loaded, no login)."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import time

import httpx
import pytest

from tests.deploy.test_compose import COMPOSE, load_compose
from tests.helpers import free_port
from tests.services.conftest import REPO

ORTHANC = shutil.which("Orthanc")
needs_orthanc = pytest.mark.skipif(ORTHANC is None, reason="Orthanc not installed: apt-get install orthanc "
                                                           "orthanc-dicomweb (.ci/setup.d/orthanc.sh)")


@pytest.fixture(scope="module")
def entrypoint():
    spec = importlib.util.spec_from_file_location("orthanc_entrypoint", REPO / "dev" / "orthanc" / "entrypoint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compose_environment() -> dict[str, str]:
    env = load_compose(COMPOSE)["services"]["orthanc"]["environment"]
    return {k: str(v) for k, v in env.items()}


def test_names_follow_the_orthancteam_convention(entrypoint) -> None:
    assert entrypoint.key("STABLE_AGE") == ["StableAge"]
    assert entrypoint.key("DICOM_WEB__STUDIES_METADATA") == ["DicomWeb", "StudiesMetadata"]
    conf = entrypoint.config({"ORTHANC__STABLE_AGE": "3", "ORTHANC__AUTHENTICATION_ENABLED": "false",
                              "ORTHANC__NAME": "pacs 1", "ORTHANC__DICOM_WEB__ENABLE": "true",
                              "ORTHANC__REGISTERED_USERS": '{"a": "b"}', "OTHER": "x"})
    assert conf["StableAge"] == 3 and conf["AuthenticationEnabled"] is False and conf["Name"] == "pacs 1"
    assert conf["DicomWeb"] == {"Enable": True} and conf["RegisteredUsers"] == {"a": "b"}
    assert "Other" not in conf and "OTHER" not in conf
    # The official image's defaults: a login unless switched off, storage on the volume compose mounts.
    bare = entrypoint.config({})
    assert bare["AuthenticationEnabled"] is True and bare["Plugins"] == []
    volume = load_compose(COMPOSE)["services"]["orthanc"]["volumes"][0].split(":")[1]
    assert bare["StorageDirectory"] == volume == bare["IndexDirectory"]


@needs_orthanc
def test_every_setting_compose_names_is_one_orthanc_knows(entrypoint, compose_environment, tmp_path) -> None:
    sample = tmp_path / "sample.json"
    subprocess.run([ORTHANC, f"--config={sample}"], check=True, capture_output=True, timeout=30)
    # Every setting the sample names, the ones it leaves commented out (/** "Key" : value **/) included.
    known = set(re.findall(r'^\s*"(\w+)"\s*:', sample.read_text(), re.MULTILINE))
    assert {"Name", "StableAge", "HttpPort"} <= known
    named = {entrypoint.key(name[len("ORTHANC__"):])[0] for name in compose_environment
             if name.startswith("ORTHANC__")}
    assert named and named <= known, sorted(named - known)
    assert set(entrypoint.config(compose_environment)) - {"DicomWeb"} <= known


@needs_orthanc
def test_orthanc_runs_the_configuration_of_the_compose_service(entrypoint, compose_environment, tmp_path) -> None:
    port = free_port()
    env = {**compose_environment, "ORTHANC__HTTP_PORT": str(port), "ORTHANC__DICOM_SERVER_ENABLED": "false",
           "ORTHANC__REMOTE_ACCESS_ALLOWED": "false", "ORTHANC__STORAGE_DIRECTORY": str(tmp_path / "db"),
           "ORTHANC__INDEX_DIRECTORY": str(tmp_path / "db")}
    conf = entrypoint.config(env)
    assert conf["Plugins"], "DICOM_WEB_PLUGIN_ENABLED=true found no DICOMweb plugin (apt-get install orthanc-dicomweb)"
    (tmp_path / "db").mkdir()
    config = tmp_path / "orthanc.json"
    config.write_text(json.dumps(conf))
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen([ORTHANC, str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                system = httpx.get(f"http://127.0.0.1:{port}/system", timeout=2)  # no login asked
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "log").read_text()[-2000:]
                time.sleep(0.2)
        assert system.status_code == 200 and system.json()["Name"] == compose_environment["ORTHANC__NAME"]
        assert "dicom-web" in httpx.get(f"http://127.0.0.1:{port}/plugins", timeout=5).json()
        assert httpx.get(f"http://127.0.0.1:{port}/dicom-web/studies", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
