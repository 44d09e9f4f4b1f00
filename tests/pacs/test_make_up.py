"""`make up` and the PACS: scripts/up.sh adds Orthanc and the bridge where Orthanc is installed (not with
PACS=off), and the Procfile's orthanc line writes the configuration Orthanc then runs."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from tests.deploy.test_up import dry_run, ports_env, supervised_processes
from tests.helpers import free_port
from tests.pacs.orthanc_server import missing
from tests.services.conftest import REPO


@pytest.mark.skipif(missing() is not None, reason=missing() or "")
def test_dry_run_adds_orthanc_and_the_bridge_where_orthanc_is_installed() -> None:
    port = free_port()
    result = dry_run(**ports_env(), PACS="auto", ORTHANC_PORT=str(port))
    assert result.returncode == 0, result.stderr
    assert supervised_processes(result)[-2:] == ["orthanc", "pacs"]
    assert f"orthanc     http://127.0.0.1:{port} (PACS; DICOMweb http://127.0.0.1:{port}/dicom-web)" in result.stdout


def test_pacs_off_starts_neither() -> None:
    result = dry_run(**ports_env(), PACS="off")
    assert result.returncode == 0, result.stderr
    assert not {"orthanc", "pacs"} & set(supervised_processes(result))
    assert "orthanc     off" in result.stdout


def orthanc_config_step(data_dir) -> list[str]:
    """The Procfile's orthanc line, its first step (the configuration), with the data directory filled in."""
    line = next(x for x in (REPO / "Procfile").read_text().splitlines() if x.startswith("orthanc:"))
    first = line.split(":", 1)[1].split("&&")[0].replace("${DISEASEID_DATA_DIR:-.data}", str(data_dir))
    argv = shlex.split(first)
    assert argv[:3] == ["python", "-m", "services.pacs.orthanc_config"]
    return [sys.executable, *argv[1:]]


@pytest.mark.parametrize("dicom_port", [None, "11112"])
def test_the_procfile_writes_a_loopback_orthanc_configuration(tmp_path, dicom_port) -> None:
    env = {"PATH": "/usr/bin:/bin", "ORTHANC_PORT": "18042", **({"ORTHANC_DICOM_PORT": dicom_port} if dicom_port
                                                             else {})}
    subprocess.run(orthanc_config_step(tmp_path), cwd=REPO, env=env, check=True, capture_output=True, timeout=60)
    conf = json.loads((tmp_path / "orthanc" / "orthanc.json").read_text())
    assert conf["HttpPort"] == 18042 and conf["RemoteAccessAllowed"] is False
    assert conf["StorageDirectory"] == str(tmp_path / "orthanc" / "db") and (tmp_path / "orthanc" / "db").is_dir()
    assert conf["DicomServerEnabled"] is (dicom_port is not None) and conf["StableAge"] == 3
    if dicom_port:
        assert conf["DicomPort"] == int(dicom_port)
