"""``make compose-test`` (dev/compose_test.py) without running it: it skips cleanly where Docker is absent
(CI), its override keeps a developer's .env away from the test stack, and ``make test`` never runs it."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from tests.deploy.test_compose import COMPOSE, COMPOSE_CPU, PYTHON_SERVICES, docker_compose_available, load_compose
from tests.services.conftest import REPO

SCRIPT = REPO / "dev" / "compose_test.py"
WRAPPER = REPO / "dev" / "compose_test.sh"


@pytest.fixture(scope="module")
def compose_test():
    spec = importlib.util.spec_from_file_location("compose_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_docker_it_says_skip_and_exits_zero(tmp_path) -> None:
    # A PATH holding python alone: no docker CLI.
    (tmp_path / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": str(tmp_path)}
    for argv in ([sys.executable, str(SCRIPT), "--no-build"], ["/bin/bash", str(WRAPPER), "--no-build"]):
        result = subprocess.run(argv, cwd=REPO, env={**env, "PY": sys.executable}, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert re.match(r"SKIP compose-test: no docker CLI", result.stdout), result.stdout


def test_the_override_drops_env_files_and_sets_test_settings(compose_test, tmp_path) -> None:
    stack = compose_test.Stack("diseaseid:latest", gpu=False, workdir=tmp_path)
    override = load_compose(tmp_path / "compose.test.yml")["services"]
    assert set(override) == set(PYTHON_SERVICES)
    for name, service in override.items():
        assert service["env_file"].tag == "!reset", name  # a developer's .env stays out of the containers
        assert service["environment"]["OMP_NUM_THREADS"] == "1"
    # The page answers the host only with a login; the test's, on a published port of its own.
    assert override["web"]["environment"]["DISEASEID_WEB_USERS"] == ":".join(stack.web_login)
    assert len(stack.web_login[1]) >= 16
    ports = {stack.inference_port, stack.explain_port, stack.web_port, stack.orthanc_port, stack.orthanc_dicom_port}
    assert len(ports) == 5 and stack.env["WEB_PUBLISH"] == str(stack.web_port)
    assert stack.env["ORTHANC_PUBLISH"] == str(stack.orthanc_port)
    assert stack.env["ORTHANC_IMAGE"] == compose_test.ORTHANC_IMAGE
    delay = str(compose_test.JOB_DELAY_S)
    assert override["explain-api"]["environment"]["DISEASEID_EXPLAIN_DEBUG_DELAY_S"] == delay
    assert override["explain-worker"]["environment"]["DISEASEID_EXPLAIN_DEBUG_DELAY_S"] == delay
    # The repository's files first, the override last; an empty env file in place of .env; a unique project.
    files = [stack.base[i + 1] for i, a in enumerate(stack.base) if a == "-f"]
    assert files == [str(COMPOSE), str(COMPOSE_CPU), str(tmp_path / "compose.test.yml")]
    assert (tmp_path / "empty.env").read_text() == "" and "--env-file" in stack.base
    assert re.fullmatch(r"diseaseid-ct-[0-9a-f]{6}", stack.project)
    assert stack.project != compose_test.Stack("diseaseid:latest", False, tmp_path / "other").project
    assert stack.env["DISEASEID_IMAGE"] == "diseaseid" and stack.env["DISEASEID_TAG"] == "latest"

    other = compose_test.Stack("diseaseid:latest", False, tmp_path / "pacs", orthanc_image="diseaseid-orthanc:debian")
    assert other.env["ORTHANC_IMAGE"] == "diseaseid-orthanc:debian"


def test_teardown_and_diagnostics_name_every_profile(compose_test) -> None:
    """`down -v` must remove the bot's, Orthanc's and the bridge's containers and volumes too."""
    profiles = {compose_test.PROFILES[i + 1] for i, a in enumerate(compose_test.PROFILES) if a == "--profile"}
    named = {p for s in load_compose(COMPOSE)["services"].values() for p in s.get("profiles", [])}
    assert named and profiles == named


@pytest.mark.skipif(not docker_compose_available(), reason="no `docker compose` plugin on this machine")
def test_docker_compose_accepts_the_override(compose_test, tmp_path) -> None:
    stack = compose_test.Stack("diseaseid:latest", gpu=False, workdir=tmp_path)
    result = stack.compose(*compose_test.PROFILES, "config", "--format", "json", check=False, quiet=True, timeout=60)
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert services["inference"]["environment"]["OMP_NUM_THREADS"] == "1"
    assert services["web"]["ports"][0]["published"] == str(stack.web_port)
    assert services["orthanc"]["image"] == stack.orthanc_image
    assert {p["published"] for p in services["orthanc"]["ports"]} == {str(stack.orthanc_port),
                                                                      str(stack.orthanc_dicom_port)}
    assert "TELEGRAM_BOT_TOKEN" in services["bot"]["environment"]
    assert services["explain-worker"]["image"] == "diseaseid:latest"  # the CPU override's image
    assert not services["explain-worker"].get("deploy", {}).get("resources", {}).get("reservations", {}).get(
        "devices")


def test_make_test_does_not_run_it_and_make_compose_test_does() -> None:
    makefile = (REPO / "Makefile").read_text()
    target = re.search(r"^compose-test:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert target and "dev/compose_test.sh" in target.group(1)
    test_recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE).group(1)
    assert "compose" not in test_recipe
    assert os.access(WRAPPER, os.X_OK)
