"""The compose stack, run for real and checked end to end as a client would: ``make compose-test``.

Builds the image (unless ``--no-build``), starts docker-compose.yml + docker-compose.cpu.yml under a unique
project name on free loopback ports, and checks over the published ports:

* ``/readyz`` of both APIs, ``POST /predict``, ``POST /predict/study``, ``POST /explain`` -> finished -> panel.png;
* an explain worker SIGKILLed mid-job from the host (``docker inspect`` gives tini's PID, the worker is its
  child): Docker restarts the container and the job still finishes;
* ``docker compose restart redis``: queued and finished jobs survive (append-only file on the volume); with
  Redis stopped the explain API answers 503 JSON, inference keeps serving, and both recover by themselves;
* ``--scale explain-worker=2``: both workers take jobs;
* the web page (its login set by the test): 401 without it; with it the page, ``/api/analyse`` of a slice
  and the heatmaps through the page;
* the bot profile against a fake Telegram Bot API on the host (tests/bot/fake_telegram.py): a photo gets a
  conclusion and the heatmap album;
* the pacs profile (Orthanc and the bridge): an MR series stored into Orthanc by STOW-RS comes back with our SR
  (saying what ``/predict`` says) and the heatmaps in its study. Skipped, with the reason, when the Orthanc image
  (``--orthanc-image``, default ``$ORTHANC_IMAGE`` or compose's own) is not on this host.

``down -v`` runs whatever happens (also on Ctrl-C and on failure). Each check prints one PASS or FAIL line;
the last line counts them and the exit status is 1 when any failed. Without Docker it prints SKIP and exits 0.
Not part of ``make test``: it builds a multi-GB image and runs for minutes.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FIXTURES = REPO / "tests" / "fixtures"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture: our heatmaps as DICOM
ANSI = re.compile(r"\x1b\[[0-9;]*m")
MIN_COMPOSE = (2, 24)  # optional env_file and !reset in docker-compose.cpu.yml
PROFILES = ("--profile", "bot", "--profile", "pacs")  # every service, for `ps`, `logs` and `down`
ORTHANC_IMAGE = os.environ.get("ORTHANC_IMAGE") or "orthancteam/orthanc:24.8.2"  # docker-compose.yml's default

# Every job sleeps this long first (DISEASEID_EXPLAIN_DEBUG_DELAY_S), so "mid-job" is a window the test can
# hit, and two workers given four jobs at once must share them.
JOB_DELAY_S = 4


class CheckFailed(Exception):
    pass


def log(line: str) -> None:
    print(line, flush=True)


# -- docker --------------------------------------------------------------------------------------------

def docker_problem() -> str | None:
    """Why the test cannot run here, or None."""
    if not shutil.which("docker"):
        return "no docker CLI on PATH"
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if info.returncode != 0:
        return f"the Docker daemon does not answer ({info.stderr.strip().splitlines()[-1:]})"
    version = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True)
    if version.returncode != 0:
        return "no `docker compose` (Compose v2 CLI plugin)"
    numbers = tuple(int(n) for n in re.findall(r"\d+", version.stdout)[:2])
    if numbers < MIN_COMPOSE:
        return f"Docker Compose {version.stdout.strip()} is older than {'.'.join(map(str, MIN_COMPOSE))}"
    return None


def run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 600, check: bool = True,
        quiet: bool = False) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise CheckFailed(f"`{' '.join(argv)}` exited {result.returncode}: {result.stderr.strip()[-1500:]}")
    if not quiet and result.returncode != 0:
        log(f"  ({' '.join(argv[:4])}... exited {result.returncode}: {result.stderr.strip()[-300:]})")
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """One compose project: the repository's files plus a generated override for test settings."""

    def __init__(self, image: str, gpu: bool, workdir: Path, orthanc_image: str = ORTHANC_IMAGE):
        self.project = f"diseaseid-ct-{secrets.token_hex(3)}"
        self.inference_port, self.explain_port = free_port(), free_port()
        self.web_port, self.orthanc_port, self.orthanc_dicom_port = free_port(), free_port(), free_port()
        self.orthanc_image = orthanc_image
        self.web_login = ("compose-test", secrets.token_urlsafe(12))
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        name, tag = split_image(image)
        self.bot_token = f"{secrets.randbelow(10**9)}:compose-test-{secrets.token_hex(8)}"
        self.telegram_url = "http://127.0.0.1:9"  # set before the bot starts
        self.env = {
            **os.environ,
            "DISEASEID_IMAGE": name, "DISEASEID_TAG": tag,
            "DISEASEID_INFERENCE_IMAGE": split_image(inference_image(image))[0],
            "PUBLISH_HOST": "127.0.0.1",
            "INFERENCE_PUBLISH": str(self.inference_port), "EXPLAIN_PUBLISH": str(self.explain_port),
            "WEB_PUBLISH": str(self.web_port), "ORTHANC_PUBLISH": str(self.orthanc_port),
            "ORTHANC_DICOM_PUBLISH": str(self.orthanc_dicom_port), "ORTHANC_IMAGE": orthanc_image,
        }
        for name in ("COMPOSE_FILE", "COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME", "INFERENCE_REPLICAS"):
            self.env.pop(name, None)
        files = ["docker-compose.yml"] + ([] if gpu else ["docker-compose.cpu.yml"])
        override = workdir / "compose.test.yml"
        override.write_text(self._override())
        empty = workdir / "empty.env"
        empty.write_text("")
        # --env-file: a developer's .env (API keys, COMPOSE_FILE, ports) must not reach the test stack.
        self.base = ["docker", "compose", "-p", self.project, "--env-file", str(empty),
                     *[a for f in files for a in ("-f", str(REPO / f))], "-f", str(override)]

    def _override(self) -> str:
        shared = {"OMP_NUM_THREADS": "1", "DISEASEID_TORCH_THREADS": "1"}
        explain = {**shared, "DISEASEID_EXPLAIN_DEBUG_DELAY_S": str(JOB_DELAY_S)}
        services = {
            # No .env in the containers either (env_file: !reset).
            "inference": shared, "explain-api": explain, "explain-worker": explain,
            # From the host the page needs a login (without one it answers loopback clients only).
            "web": {**shared, "DISEASEID_WEB_USERS": ":".join(self.web_login)},
            "pacs": {**shared, "DISEASEID_PACS_POLL_S": "1"},
            "bot": {**shared, "TELEGRAM_BOT_TOKEN": "${CT_BOT_TOKEN:-}", "TELEGRAM_API_URL": "${CT_TELEGRAM_URL:-}",
                    "BOT_POLLING_TIMEOUT_S": "1", "BOT_ALBUM_WAIT_S": "0.5"},
        }
        lines = ["services:"]
        for service, env in services.items():
            lines += [f"  {service}:", "    env_file: !reset []", "    environment:"]
            lines += [f"      {k}: {json.dumps(v)}" for k, v in env.items()]
        return "\n".join(lines) + "\n"

    def compose(self, *args: str, timeout: float = 600, check: bool = True, quiet: bool = False
                ) -> subprocess.CompletedProcess:
        env = {**self.env, "CT_BOT_TOKEN": self.bot_token, "CT_TELEGRAM_URL": self.telegram_url}
        return run([*self.base, *args], env=env, timeout=timeout, check=check, quiet=quiet)

    def up(self, *args: str, timeout: float = 600) -> None:
        self.compose("up", "-d", "--no-build", "--pull", "never", *args, timeout=timeout)

    def containers(self, service: str) -> list[str]:
        out = self.compose("ps", "-q", "--all", service).stdout.split()
        return sorted(out)

    def inspect(self, container: str, fmt: str) -> str:
        return run(["docker", "inspect", "-f", fmt, container]).stdout.strip()

    def network_gateway(self) -> str:
        return run(["docker", "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
                    f"{self.project}_default"]).stdout.strip()

    def leftovers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        found = []
        for kind in ("container", "volume", "network"):
            argv = ["docker", kind, "ls", "-q", "--filter", label] + (["--all"] if kind == "container" else [])
            found += [f"{kind} {x}" for x in run(argv, check=False).stdout.split()]
        return found

    def diagnostics(self) -> None:
        log("--- docker compose ps ---")
        log(self.compose(*PROFILES, "ps", "--all", check=False, quiet=True).stdout.rstrip())
        log("--- last log lines ---")
        log(self.compose(*PROFILES, "logs", "--no-color", "--tail", "25", check=False,
                         quiet=True).stdout.rstrip())
        log("---")


# -- HTTP as a client ----------------------------------------------------------------------------------

def http():
    import httpx

    return httpx.Client(timeout=httpx.Timeout(60.0, connect=5.0))


def tumor_slice(cls: str = "glioma", index: int = 0) -> Path:
    return sorted((FIXTURES / "tumor" / cls).glob("*.jpg"))[index]


def dementia_subject(subject: str = "MildDemented-002") -> list[Path]:
    return sorted((FIXTURES / "dementia" / subject.split("-")[0]).glob(f"{subject}_*.jpg"))


def wait_until(what: str, probe: Callable[[], object], timeout: float, interval: float = 1.0) -> object:
    """``probe()``'s first truthy value; a probe may raise while the condition is not met yet."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except CheckFailed:
            raise  # a final answer (a failed job), not "not yet"
        except Exception as exc:  # noqa: BLE001 - not yet; the last reason is reported on timeout
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise CheckFailed(f"{what}: not within {timeout:.0f} s (last: {str(last)[:300]})")
        time.sleep(interval)


class Client:
    def __init__(self, stack: Stack):
        self.inference = f"http://127.0.0.1:{stack.inference_port}"
        self.explain = f"http://127.0.0.1:{stack.explain_port}"
        self.web = f"http://127.0.0.1:{stack.web_port}"
        self.orthanc = f"http://127.0.0.1:{stack.orthanc_port}"
        self.http = http()

    def ready(self, base: str) -> dict | None:
        r = self.http.get(f"{base}/readyz", timeout=5)
        return r.json() if r.status_code == 200 else None

    def submit(self, path: Path, *, target: str | None = None, task: str = "tumor") -> str:
        data = {"task": task, **({"target": target} if target else {})}
        r = self.http.post(f"{self.explain}/explain", data=data,
                           files={"file": (path.name, path.read_bytes(), "image/jpeg")})
        if r.status_code != 202:
            raise CheckFailed(f"POST /explain answered {r.status_code}: {r.text[:300]}")
        return r.json()["job_id"]

    def job(self, job_id: str, wait: float = 0) -> dict:
        r = self.http.get(f"{self.explain}/explain/{job_id}", params={"wait": wait} if wait else None)
        if r.status_code != 200:
            raise CheckFailed(f"GET /explain/{job_id} answered {r.status_code}: {r.text[:300]}")
        return r.json()

    def finished(self, job_id: str, timeout: float) -> dict:
        def probe():
            view = self.job(job_id, wait=10)
            if view["status"] == "failed":
                raise CheckFailed(f"job {job_id} failed: {view.get('error')}")
            return view if view["status"] == "finished" else None
        return wait_until(f"job {job_id} finished", probe, timeout, interval=0.2)

    def panel(self, job_id: str) -> bytes:
        r = self.http.get(f"{self.explain}/explain/{job_id}/panel.png")
        if r.status_code != 200 or r.headers.get("content-type") != "image/png" or r.content[:8] != PNG_MAGIC:
            raise CheckFailed(f"panel.png of {job_id}: {r.status_code} {r.headers.get('content-type')}")
        return r.content


# -- the checks ----------------------------------------------------------------------------------------

class Run:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.passed: list[str] = []
        self.failed: list[str] = []

    def check(self, name: str, fn: Callable[[], str | None], *, critical: bool = False) -> bool:
        start = time.monotonic()
        try:
            detail = fn()
        except CheckFailed as exc:
            self.failed.append(name)
            log(f"FAIL {name}: {exc} ({time.monotonic() - start:.1f} s)")
            if critical:
                raise
            return False
        except Exception as exc:  # noqa: BLE001 - an unexpected error fails the check, not the teardown
            self.failed.append(name)
            log(f"FAIL {name}: {type(exc).__name__}: {exc} ({time.monotonic() - start:.1f} s)")
            if critical:
                raise CheckFailed(str(exc)) from exc
            return False
        self.passed.append(name)
        log(f"PASS {name}" + (f": {detail}" if detail else "") + f" ({time.monotonic() - start:.1f} s)")
        return True


def split_image(image: str) -> tuple[str, str]:
    """NAME:TAG -> (NAME, TAG); TAG "latest" where none is given."""
    return tuple(image.rsplit(":", 1)) if ":" in image.split("/")[-1] else (image, "latest")


def inference_image(image: str) -> str:
    """The inference service's image beside ``image`` (docker-compose.yml: ``<name>-inference:<tag>``)."""
    name, tag = split_image(image)
    return f"{name}-inference:{tag}"


# Where Dockerfile.inference's export stage gets torch, per variant: the CPU wheels, or PyPI (the CUDA build).
TORCH_INDEX = {"cpu": "https://download.pytorch.org/whl/cpu", "cuda": "https://pypi.org/simple"}


def build(args: argparse.Namespace) -> str:
    """The full image and the inference service's image without torch."""
    env = dict(os.environ)
    if subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode != 0:
        env["DOCKER_BUILDKIT"] = "0"  # no buildx plugin: the legacy builder
    done = []
    for argv in (["docker", "build", "--build-arg", f"TORCH_VARIANT={args.torch_variant}", "-t", args.image, "."],
                 ["docker", "build", "-f", "Dockerfile.inference", "--build-arg",
                  f"TORCH_INDEX_URL={TORCH_INDEX[args.torch_variant]}", "-t", inference_image(args.image), "."]):
        result = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
        if result.returncode != 0:
            raise CheckFailed(f"`{' '.join(argv)}` exited {result.returncode}:\n{result.stdout[-2000:]}"
                              f"{result.stderr[-2000:]}")
        cached = result.stdout.count("Using cache") + result.stdout.count("CACHED")
        done.append(f"{' '.join(argv)}; {cached} cached steps")
    return "; ".join(done)


def image_facts(image: str) -> str:
    size = int(run(["docker", "image", "inspect", "-f", "{{.Size}}", image]).stdout.strip())
    variant = run(["docker", "image", "inspect", "-f",
                   '{{index .Config.Labels "io.diseaseid.torch-variant"}}', image]).stdout.strip()
    slim = inference_image(image)
    slim_size = int(run(["docker", "image", "inspect", "-f", "{{.Size}}", slim]).stdout.strip())
    return (f"{image}: {size / 1e9:.2f} GB, torch variant {variant or '?'}; {slim} (the inference service, "
            f"without torch): {slim_size / 1e9:.2f} GB")


def wait_healthy(stack: Stack, expected: dict[str, int], timeout: float) -> str:
    """Poll ``docker compose ps`` until every container of ``expected`` (service -> count) is healthy.

    Not ``up --wait``: that gives up at the first "unhealthy", which a loaded host shows for a while during
    start (the probe is a Python process with a timeout); Docker keeps probing and a later pass counts.
    Returns when each service turned healthy, and any unhealthy spell seen on the way.
    """
    t0 = time.monotonic()
    healthy_at: dict[str, float] = {}
    unhealthy: set[str] = set()
    while True:
        rows = [json.loads(line) for line in stack.compose("ps", "--all", "--format", "json").stdout.splitlines()
                if line.strip()]
        by_service: dict[str, list[dict]] = {}
        for row in rows:
            by_service.setdefault(row["Service"], []).append(row)
        for service, want in expected.items():
            mine = by_service.get(service, [])
            for row in mine:
                if row["State"] not in ("running", "restarting"):
                    raise CheckFailed(f"{row['Name']} is {row['State']}: {row.get('Status')}")
                if row.get("Health") == "unhealthy":
                    unhealthy.add(service)
            if len(mine) == want and all(r.get("Health") in ("healthy", "") for r in mine):
                healthy_at.setdefault(service, time.monotonic() - t0)
        if len(healthy_at) == len(expected):
            break
        if time.monotonic() - t0 > timeout:
            states = {r["Name"]: r.get("Health") or r["State"] for r in rows}
            raise CheckFailed(f"not healthy within {timeout:.0f} s: {states}")
        time.sleep(1)
    text = ", ".join(f"{s} {t:.0f} s" for s, t in sorted(healthy_at.items(), key=lambda kv: kv[1]))
    if unhealthy:
        text += f" (unhealthy for a while on the way: {', '.join(sorted(unhealthy))})"
    return text


SERVICES = {"redis": 1, "inference": 1, "explain-api": 1, "explain-worker": 1, "web": 1}


def start(stack: Stack, client: Client) -> str:
    stack.compose("config", "--quiet")
    t0 = time.monotonic()
    stack.up(timeout=300)
    healthy = wait_healthy(stack, SERVICES, 600)
    inference = wait_until("inference /readyz", lambda: client.ready(client.inference), 60)
    explain = wait_until("explain /readyz", lambda: client.ready(client.explain), 60)
    return (f"healthy after {healthy}; {time.monotonic() - t0:.0f} s from `up`; inference /readyz "
            f"{inference['status']}, explain /readyz {explain['status']} with {explain['workers']} worker(s)")


def predict(client: Client) -> str:
    path = tumor_slice("glioma")
    r = client.http.post(f"{client.inference}/predict", data={"task": "tumor"},
                         files={"file": (path.name, path.read_bytes(), "image/jpeg")})
    if r.status_code != 200:
        raise CheckFailed(f"/predict answered {r.status_code}: {r.text[:300]}")
    body = r.json()
    # The shipped models diagnose this fixture (glioma, ~96%); anything else is an image built from weights that
    # do not go together (see the check of the OOD statistics).
    if (body["outcome"], body["label"]) != ("diagnosis", "glioma"):
        raise CheckFailed(f"{path.name}: {body['outcome']} {body['label']} ({body.get('ood')}), not a glioma")
    return f"{path.name}: {body['outcome']} {body['label']} in {body['timing_ms']['total']:.0f} ms"


def inference_without_torch(stack: Stack) -> str:
    """The inference container runs its own image, and that image has no torch (docker-compose.yml)."""
    container = stack.containers("inference")[0]
    image = stack.inspect(container, "{{.Config.Image}}")
    probe = stack.compose("exec", "-T", "inference", "python", "-c",
                          "import importlib.util as u, sys; sys.exit(3 if u.find_spec('torch') else 0)",
                          check=False, quiet=True)
    if probe.returncode != 0:
        raise CheckFailed(f"{image}: torch is installed in the inference container (exit {probe.returncode})")
    if image != inference_image(stack.env["DISEASEID_IMAGE"] + ":" + stack.env["DISEASEID_TAG"]):
        raise CheckFailed(f"the inference container runs {image}, not the image without torch")
    return f"{image}: no torch installed"


def ood_statistics_in_use(stack: Stack) -> str:
    """The image's OOD statistics were fitted on its models: none is ignored at load (then the detector would
    fall back to an energy threshold, and refuse real MRI). Catches an image built from a working tree caught
    between a training run's new weights and its OOD refit."""
    logs = stack.compose("logs", "--no-color", "inference", "explain-worker", quiet=True).stdout
    ignored = sorted({m.group(0) for m in re.finditer(r"OOD statistics \S+ were fitted on [^:]+", logs)})
    if ignored:
        raise CheckFailed("; ".join(ignored) + ": rebuild from weights whose ood.json matches their models")
    return "no 'OOD statistics ... were fitted on ... ignored' in the inference and worker logs"


def predict_study(client: Client) -> str:
    paths = dementia_subject()
    r = client.http.post(f"{client.inference}/predict/study", data={"task": "dementia"},
                         files=[("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths])
    if r.status_code != 200:
        raise CheckFailed(f"/predict/study answered {r.status_code}: {r.text[:300]}")
    body = r.json()
    if body["n_slices"] != len(paths):
        raise CheckFailed(f"{body['n_slices']} slices answered for {len(paths)} sent")
    return (f"{len(paths)} slices of MildDemented-002: subject {body['subject']['label']} "
            f"({body['aggregation']['method']})")


def explain(client: Client, state: dict) -> str:
    t0 = time.monotonic()
    job_id = client.submit(tumor_slice("glioma"))
    view = client.finished(job_id, 180)
    panel = client.panel(job_id)
    state["finished_job"] = job_id
    return (f"job {job_id[:8]} finished in {time.monotonic() - t0:.1f} s "
            f"({view['result']['timing_ms']}), panel.png {len(panel)} bytes")


def worker_pid(stack: Stack, container: str) -> tuple[int, int]:
    """(tini's PID on the host, the worker's): compose's ``init: true`` makes the worker tini's child."""
    init = int(stack.inspect(container, "{{.State.Pid}}"))
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == init:
            children.append(stat.parent.name)
    if len(children) != 1:
        raise CheckFailed(f"PID {init} of {container[:12]} has children {children}, expected the worker alone")
    cmdline = Path(f"/proc/{children[0]}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    if "services.explain.worker" not in cmdline:
        raise CheckFailed(f"child {children[0]} of {init} runs {cmdline!r}, not the worker")
    return init, int(children[0])


def kill_worker_mid_job(stack: Stack, client: Client) -> str:
    (container,) = stack.containers("explain-worker")
    restarts = int(stack.inspect(container, "{{.RestartCount}}"))
    job_id = client.submit(tumor_slice("meningioma"))
    wait_until(f"job {job_id[:8]} started", lambda: client.job(job_id)["status"] == "started", 60, 0.2)
    init, pid = worker_pid(stack, container)
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_until("Docker restarts the worker container",
               lambda: int(stack.inspect(container, "{{.RestartCount}}")) > restarts
               and stack.inspect(container, "{{.State.Running}}") == "true", 60, 0.5)
    restarted = time.monotonic() - killed
    if stack.inspect(container, "{{.State.Pid}}") == str(init):
        raise CheckFailed("the container's init PID did not change")
    view = client.finished(job_id, 240)
    client.panel(job_id)
    return (f"worker PID {pid} (child of tini {init}) SIGKILLed while job {job_id[:8]} was started; container "
            f"restarted after {restarted:.1f} s (RestartCount {restarts} -> "
            f"{stack.inspect(container, '{{.RestartCount}}')}), job finished {time.monotonic() - killed:.0f} s "
            f"after the kill, panel.png 200 (finished {view['ended_at']})")


def error_json(r, status: int = 503) -> str | None:
    """The error code of an answer with ``status`` in the services' JSON shape, or None."""
    try:
        return r.json()["error"]["code"] if r.status_code == status else None
    except (ValueError, KeyError, TypeError):
        return None


def redis_restart(stack: Stack, client: Client, state: dict) -> str:
    finished = state.get("finished_job") or client.submit(tumor_slice("glioma"))
    client.finished(finished, 180)
    stack.compose("stop", "explain-worker", timeout=120)  # no worker: the next job stays queued
    queued = client.submit(tumor_slice("pituitary"))
    if client.job(queued)["status"] != "queued":
        raise CheckFailed(f"job {queued[:8]} is not queued with the worker stopped")
    (api,) = stack.containers("explain-api")
    api_started = stack.inspect(api, "{{.State.StartedAt}}")
    appendonly = stack.compose("exec", "-T", "redis", "redis-cli", "config", "get", "appendonly").stdout.split()
    if appendonly[-1:] != ["yes"]:
        raise CheckFailed(f"Redis runs without the append-only file: {appendonly}")

    # 1. `docker compose restart redis`, while a client keeps asking: every answer is 200 or a 503 JSON error.
    seen: dict[str, int] = {}
    bad: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        with http() as c:
            while not stop.is_set():
                try:
                    r = c.get(f"{client.explain}/explain/{finished}", timeout=5)
                    key = str(r.status_code) if r.status_code == 200 else f"503 {error_json(r)}"
                    if r.status_code not in (200, 503) or (r.status_code == 503 and not error_json(r)):
                        bad.append(f"{r.status_code} {r.text[:100]}")
                except Exception as exc:  # noqa: BLE001
                    key = type(exc).__name__
                    bad.append(key)
                seen[key] = seen.get(key, 0) + 1
                time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    t0 = time.monotonic()
    stack.compose("restart", "redis", timeout=120)
    wait_until("explain API answers for the finished job after the restart",
               lambda: client.http.get(f"{client.explain}/explain/{finished}").status_code == 200, 60, 0.2)
    restart_s = time.monotonic() - t0
    stop.set()
    poller.join(10)
    if bad:
        raise CheckFailed(f"during `restart redis` the explain API answered {sorted(set(bad))}")
    survived = (client.job(finished)["status"], client.job(queued)["status"])
    if survived != ("finished", "queued"):
        raise CheckFailed(f"after `restart redis` the jobs are {survived}, expected (finished, queued)")
    client.panel(finished)

    # 2. Redis stopped for longer: a deterministic outage window.
    stack.compose("stop", "redis", timeout=60)
    outage = {
        "GET /explain/{id}": client.http.get(f"{client.explain}/explain/{finished}", timeout=15),
        "POST /explain": client.http.post(f"{client.explain}/explain", data={"task": "tumor"}, timeout=15,
                                          files={"file": ("x.jpg", tumor_slice("notumor").read_bytes(),
                                                          "image/jpeg")}),
        "explain /readyz": client.http.get(f"{client.explain}/readyz", timeout=15),
    }
    codes = {k: (r.status_code, error_json(r)) for k, r in outage.items()}
    if any(status != 503 or not code for status, code in codes.values()):
        raise CheckFailed(f"with Redis stopped: {codes}")
    retry_after = outage["POST /explain"].headers.get("retry-after")
    inference = predict(client)  # inference does not use Redis
    stack.compose("start", "redis", timeout=60)
    t1 = time.monotonic()
    wait_until("explain /healthz and the finished job answer again",
               lambda: client.http.get(f"{client.explain}/explain/{finished}").status_code == 200, 60, 0.2)
    recovered = time.monotonic() - t1
    if stack.inspect(api, "{{.State.StartedAt}}") != api_started:
        raise CheckFailed("the explain API container was restarted; it should have recovered by itself")
    survived = (client.job(finished)["status"], client.job(queued)["status"])
    if survived != ("finished", "queued"):
        raise CheckFailed(f"after stop/start of Redis the jobs are {survived}, expected (finished, queued)")
    client.panel(finished)

    # 3. The queued job is done once a worker is back.
    stack.compose("start", "explain-worker", timeout=120)
    client.finished(queued, 240)
    client.panel(queued)
    summary = ", ".join(f"{k} x{v}" for k, v in sorted(seen.items()))
    return (f"appendonly yes; `restart redis` took {restart_s:.1f} s, client saw [{summary}]; with Redis "
            f"stopped: {', '.join(f'{k} {s} {c}' for k, (s, c) in codes.items())} (Retry-After {retry_after}), "
            f"inference still answered ({inference}); explain API recovered {recovered:.1f} s after "
            f"`start redis` without a restart; finished job {finished[:8]} kept its panel, queued job "
            f"{queued[:8]} finished once the worker was back")


def scale_workers(stack: Stack, client: Client) -> str:
    stack.up("--scale", "explain-worker=2", "--no-recreate", timeout=300)
    started = wait_healthy(stack, {**SERVICES, "explain-worker": 2}, 600)
    containers = stack.containers("explain-worker")
    if len(containers) != 2:
        raise CheckFailed(f"{len(containers)} explain-worker containers, expected 2")
    wait_until("explain /readyz counts 2 workers", lambda: (client.ready(client.explain) or {}).get("workers") == 2,
               90)
    jobs = [client.submit(tumor_slice(cls, 1)) for cls in ("glioma", "meningioma", "notumor", "pituitary")]
    for job_id in jobs:
        client.finished(job_id, 240)
    took: dict[str, list[str]] = {}
    for container in containers:
        logs = run(["docker", "logs", container], check=False, quiet=True)
        lines = [ANSI.sub("", line) for line in (logs.stdout + logs.stderr).splitlines()]
        took[container] = [j for j in jobs if any("Job OK" in line and f"({j})" in line for line in lines)]
    if sorted(j for done in took.values() for j in done) != sorted(jobs):
        raise CheckFailed(f"not every job is in a worker's log: {took}")
    if not all(took.values()):
        raise CheckFailed(f"one worker took every job: {({c[:12]: len(j) for c, j in took.items()})}")
    return (f"2 workers healthy ({started}); 4 jobs: "
            + ", ".join(f"worker {c[:12]} took {len(j)}" for c, j in took.items()))


def bot(stack: Stack, client: Client) -> str:
    from tests.bot.fake_telegram import FakeTelegram, make_user

    gateway = stack.network_gateway()
    if not gateway:
        raise CheckFailed(f"no gateway address for network {stack.project}_default")

    with FakeTelegram(stack.bot_token, host=gateway) as telegram:
        stack.telegram_url = telegram.url
        mark = telegram.mark()
        stack.compose("--profile", "bot", "up", "-d", "--no-build", "--pull", "never", "bot", timeout=300)
        try:
            telegram.wait_for(lambda c: c.method == "getUpdates", timeout=90, after=mark)
        except TimeoutError:
            raise CheckFailed(f"the bot never polled {telegram.url}") from None
        user = make_user(5150, "en")
        mark = telegram.mark()
        telegram.send_photo(user, tumor_slice("glioma").read_bytes())
        try:
            conclusion = telegram.wait_for(lambda c: c.chat_id == user["id"] and c.method == "editMessageText"
                                           and "Conclusion" in c.text, timeout=120, after=mark)
            album = telegram.wait_for(lambda c: c.chat_id == user["id"] and c.method == "sendMediaGroup",
                                      timeout=180, after=mark)
        except TimeoutError:
            sent = [(c.method, c.text[:80]) for c in telegram.calls_to(user["id"], after=mark)]
            raise CheckFailed(f"no conclusion and heatmap album for the photo; the bot sent {sent}") from None
        label = re.search(r"Conclusion: <b>(.+?)</b>", conclusion.text)
        pictures = album.media_files()
        if not all(content[:8] == PNG_MAGIC for _, content in pictures):
            raise CheckFailed("the album holds something that is not a PNG")
        token_leaks = stack.compose("--profile", "bot", "logs", "--no-color", "bot", quiet=True).stdout
        if stack.bot_token.split(":")[1] in token_leaks:
            raise CheckFailed("the bot token appears in the bot's log")
        (container,) = stack.containers("bot")
        stack.compose("--profile", "bot", "stop", "bot", timeout=60)
    return (f"fake Bot API at {telegram.url} (compose network gateway); bot {container[:12]} polled it, answered "
            f"a glioma photo with 'Conclusion: {label.group(1) if label else '?'}' and an album of "
            f"{len(pictures)} PNGs")


def web_page(stack: Stack, client: Client) -> str:
    """The page from the host: refused without its login; with it the page, an analysis and its heatmaps."""
    refused = client.http.get(f"{client.web}/")
    if refused.status_code != 401 or error_json(refused, 401) != "unauthorized":
        raise CheckFailed(f"GET / without the login answered {refused.status_code}: {refused.text[:200]}")
    auth = stack.web_login
    page = client.http.get(f"{client.web}/", auth=auth)
    if page.status_code != 200 or "text/html" not in page.headers.get("content-type", ""):
        raise CheckFailed(f"GET / answered {page.status_code} {page.headers.get('content-type')}")
    path = tumor_slice("glioma")
    r = client.http.post(f"{client.web}/api/analyse", auth=auth, data={"task": "tumor", "lang": "en"},
                         files={"files": (path.name, path.read_bytes(), "image/jpeg")})
    if r.status_code != 200:
        raise CheckFailed(f"POST /api/analyse answered {r.status_code}: {r.text[:300]}")
    view = r.json()
    direct = client.http.post(f"{client.inference}/predict", data={"task": "tumor"},
                              files={"file": (path.name, path.read_bytes(), "image/jpeg")}).json()
    if not view.get("diagnosis") or view.get("label") != direct.get("display_en"):
        raise CheckFailed(f"the page concluded {view.get('label')!r}, /predict {direct.get('display_en')!r}")
    job_id = (view.get("explain") or {}).get("job_id")
    if not job_id:
        raise CheckFailed(f"the page queued no heatmaps: {view.get('explain')}")

    def finished() -> dict | None:
        status = client.http.get(f"{client.web}/api/explain/{job_id}", auth=auth).json()
        if status.get("status") in ("failed", "refused"):
            raise CheckFailed(f"the page's heatmap job {job_id[:8]}: {status}")
        return status if status.get("status") == "finished" else None

    status = wait_until(f"the page's heatmap job {job_id[:8]}", finished, 240)
    panel = client.http.get(f"{client.web}/{status['panel_url']}", auth=auth)
    if panel.status_code != 200 or panel.content[:8] != PNG_MAGIC:
        raise CheckFailed(f"{status['panel_url']} through the page: {panel.status_code}")
    return (f"GET / 401 unauthorized without the login, 200 HTML ({len(page.content)} bytes) with it; "
            f"/api/analyse {path.name}: {view['label']} (= /predict); heatmap job {job_id[:8]} finished, "
            f"{len(status.get('images', []))} overlays, panel.png {len(panel.content)} bytes through the page")


def image_present(image: str) -> bool:
    return run(["docker", "image", "inspect", image], check=False, quiet=True).returncode == 0


def pacs(stack: Stack, client: Client) -> str:
    """Orthanc and the bridge (--profile pacs): a one-slice MR series stored by STOW-RS comes back with the SR
    of its slice (the finding and probability of /predict), the explanation's SR and three heatmap images."""
    import pydicom

    from services.common.dicom_results import multipart_related
    from tests.dicom_series import fixture_slices, group_facts, groups, mr_series

    t0 = time.monotonic()
    stack.compose("--profile", "pacs", "up", "-d", "--no-build", "--pull", "never", "orthanc", "pacs", timeout=300)
    system = wait_until("Orthanc answers GET /system", lambda: client.http.get(f"{client.orthanc}/system").json(),
                        120)
    plugins = client.http.get(f"{client.orthanc}/plugins").json()
    wait_until("the bridge watches Orthanc",
               lambda: "watching" in stack.compose("--profile", "pacs", "logs", "--no-color", "pacs",
                                                 quiet=True).stdout, 120)
    series = mr_series(fixture_slices("tumor", "glioma", 1))
    body, content_type = multipart_related(series.files)
    r = client.http.post(f"{client.orthanc}/dicom-web/studies", content=body,
                         headers={"Content-Type": content_type, "Accept": "application/dicom+json"})
    if r.status_code != 200:
        raise CheckFailed(f"STOW-RS into Orthanc answered {r.status_code}: {r.text[:300]}")
    stored = time.monotonic()
    found = client.http.post(f"{client.orthanc}/tools/lookup", content=series.series_uid).json()
    series_id = next(f["ID"] for f in found if f["Type"] == "Series")

    def handled() -> str | None:
        logs = stack.compose("--profile", "pacs", "logs", "--no-color", "pacs", quiet=True).stdout
        outcome = re.search(rf"series {series_id}: (done|failed)[^\n]*", logs)
        if outcome and outcome.group(1) == "failed":
            raise CheckFailed(f"the bridge: {outcome.group(0)}")
        return outcome.group(0) if outcome else None

    line = wait_until(f"the bridge handles series {series_id[:8]}", handled, 300, 2.0)
    took = time.monotonic() - stored
    instances = client.http.post(f"{client.orthanc}/tools/find", json={
        "Level": "Instance", "Query": {"StudyInstanceUID": series.study_uid}}).json()
    objects = [pydicom.dcmread(io.BytesIO(client.http.get(f"{client.orthanc}/instances/{i}/file").content))
               for i in instances]
    ours = [o for o in objects if o.SOPInstanceUID not in series.sop_uids]
    srs = [o for o in ours if o.Modality == "SR"]
    images = [o for o in ours if o.SOPClassUID == SC_CLASS]
    predict_sr = [o for o in srs if o.SeriesNumber == 9101]
    answer = client.http.post(f"{client.inference}/predict", data={"task": "tumor"},
                              files={"file": ("s.dcm", series.files[0], "application/dicom")}).json()
    # A diagnosis gets the explanation too (its SR and three heatmap images); a refusal the SR alone.
    diagnosed = answer["outcome"] == "diagnosis"
    if len(predict_sr) != 1 or len(images) != 3 * diagnosed or len(srs) != 1 + diagnosed:
        raise CheckFailed(f"/predict: {answer['outcome']}; in the study: "
                          f"{[(o.Modality, o.SeriesNumber, o.SOPClassUID) for o in ours]}")
    facts = group_facts(groups(predict_sr[0])[0])
    if diagnosed:
        want = (f"tumor.{answer['label_index']}", answer["display_en"])
        probability = answer["probabilities"][answer["label"]]
        if facts["finding"] != want or abs(facts["numbers"].get("122157", -1) - probability) > 1e-9:
            raise CheckFailed(f"the SR says {facts['finding']} {facts['numbers']}, /predict {want} {probability}")
        said = f"{facts['finding'][1]}, p={probability:.3f} = /predict"
    else:
        codes = {"not_a_brain_mri": "not-brain-mri", "wrong_task": "wrong-task"}
        if facts["finding"] is not None or facts["outcome"] != codes.get(answer["outcome"]):
            raise CheckFailed(f"the SR says {facts['finding']} {facts['outcome']}, /predict {answer['outcome']}")
        said = f"outcome {facts['outcome']} = /predict"
    if facts["sources"] != series.sop_uids or any(o.StudyInstanceUID != series.study_uid for o in ours):
        raise CheckFailed(f"the SR references {facts['sources']}, not the slice {series.sop_uids}")
    return (f"{stack.orthanc_image}: Orthanc {system.get('Version')} '{system.get('Name')}', plugins {plugins}, "
            f"up {stored - t0:.0f} s after `--profile pacs up`; one glioma MR slice stored by STOW-RS; bridge "
            f"'{line}' {took:.0f} s later; in its study an SR ({said})"
            + (f", the explanation's SR and {len(images)} heatmap images" if diagnosed else ""))


def gpu_reservation(args: argparse.Namespace, workdir: Path) -> str:
    """docker-compose.yml alone: the worker container asks the engine for one NVIDIA GPU (DeviceRequests).

    Checked on a container that is created, not run, in a project of its own; starting it then either works
    (a GPU host with the NVIDIA Container Toolkit) or fails with the engine's "could not select device
    driver", which is reported, not failed: it is what a host without the toolkit must say.
    """
    stack = Stack(args.image, True, workdir)
    cuda = f"{args.image}-cuda"
    tagged = run(["docker", "image", "inspect", cuda], check=False, quiet=True).returncode != 0
    if tagged:
        run(["docker", "tag", args.image, cuda])
    try:
        stack.up("--no-start", "explain-worker", timeout=300)
        (container,) = stack.containers("explain-worker")
        requests = json.loads(stack.inspect(container, "{{json .HostConfig.DeviceRequests}}") or "null")
        wanted = [r for r in requests or [] if r.get("Driver") == "nvidia" and r.get("Count") == 1
                  and ["gpu"] in r.get("Capabilities", [])]
        if not wanted:
            raise CheckFailed(f"the worker container requests no NVIDIA GPU: DeviceRequests={requests}")
        started = stack.compose("start", "explain-worker", check=False, quiet=True, timeout=120)
        outcome = ("started" if started.returncode == 0 else
                   "start refused: " + (re.findall(r"could not select device driver[^\n]*", started.stderr)
                                        or [started.stderr.strip()[-200:]])[0])
        return f"DeviceRequests {json.dumps(wanted)}; on this host: {outcome}"
    finally:
        stack.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False, quiet=True, timeout=240)
        if tagged:
            run(["docker", "rmi", cuda], check=False, quiet=True)


def teardown(stack: Stack) -> str:
    stack.compose(*PROFILES, "down", "-v", "--remove-orphans", "--timeout", "30", timeout=240)
    left = stack.leftovers()
    if left:
        raise CheckFailed(f"left behind: {left}")
    return f"`down -v`: no container, volume or network of {stack.project} left"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


# -- main ----------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dev/compose_test.py", description=__doc__.split("\n")[0])
    parser.add_argument("--image", default=os.environ.get("COMPOSE_TEST_IMAGE", "diseaseid:latest"),
                        help="the image every Python service runs (default: diseaseid:latest)")
    parser.add_argument("--torch-variant", default=os.environ.get("TORCH_VARIANT", "cuda"), choices=("cpu", "cuda"),
                        help="TORCH_VARIANT of the build (default cuda: torch from PyPI, runs on the CPU too)")
    parser.add_argument("--no-build", action="store_true", help="use the image as it is")
    parser.add_argument("--gpu", action="store_true",
                        help="without docker-compose.cpu.yml: the worker reserves an NVIDIA GPU")
    parser.add_argument("--skip-bot", action="store_true", help="leave out the bot profile")
    parser.add_argument("--orthanc-image", default=ORTHANC_IMAGE,
                        help="the orthanc service's image (default $ORTHANC_IMAGE or docker-compose.yml's); the "
                             "pacs check is skipped when it is not on this host (dev/orthanc builds a stand-in)")
    parser.add_argument("--skip-pacs", action="store_true", help="leave out the pacs profile")
    args = parser.parse_args(argv)

    problem = docker_problem()
    if problem:
        log(f"SKIP compose-test: {problem}")
        return 0
    compose_version = run(["docker", "compose", "version", "--short"]).stdout.strip()
    engine = run(["docker", "info", "--format", "{{.ServerVersion}}"]).stdout.strip()
    log(f"compose-test {time.strftime('%Y-%m-%d %H:%M:%S %Z')}: Docker Engine {engine}, Compose {compose_version}")

    result = Run(args)
    t_start = time.monotonic()
    # SIGTERM (a CI timeout, `kill`) must still reach the teardown below.
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="diseaseid-compose-test-") as tmp:
        stack: Stack | None = None
        try:
            if not args.no_build:
                result.check("build", lambda: build(args), critical=True)
            result.check("image", lambda: image_facts(args.image), critical=True)
            if args.gpu:  # docker-compose.yml alone names the worker's image <tag>-cuda
                run(["docker", "tag", args.image, f"{args.image}-cuda"])
            stack = Stack(args.image, args.gpu, Path(tmp), args.orthanc_image)
            log(f"project {stack.project}: inference on 127.0.0.1:{stack.inference_port}, "
                f"explain on 127.0.0.1:{stack.explain_port}")
            client = Client(stack)
            state: dict = {}
            result.check("start: all services healthy, both /readyz 200", lambda: start(stack, client),
                         critical=True)
            result.check("OOD statistics fitted on the shipped models", lambda: ood_statistics_in_use(stack))
            result.check("inference runs the image without torch", lambda: inference_without_torch(stack))
            result.check("POST /predict", lambda: predict(client))
            result.check("POST /predict/study", lambda: predict_study(client))
            result.check("POST /explain -> finished -> panel.png", lambda: explain(client, state))
            result.check("web page: login, /api/analyse, heatmaps through the page", lambda: web_page(stack, client))
            if args.skip_pacs:
                log("SKIP pacs profile: --skip-pacs")
            elif not image_present(args.orthanc_image):
                log(f"SKIP pacs profile: image {args.orthanc_image} is not on this host (docker pull it, or build "
                    "the stand-in: docker build -t diseaseid-orthanc:debian dev/orthanc, then --orthanc-image "
                    "diseaseid-orthanc:debian)")
            else:
                result.check("pacs profile: a series stored into Orthanc comes back with our SR and heatmaps",
                             lambda: pacs(stack, client))
            result.check("worker SIGKILLed mid-job: restarted by Docker, job finishes",
                         lambda: kill_worker_mid_job(stack, client))
            result.check("restart redis: jobs survive, 503 JSON meanwhile, recovery without restarts",
                         lambda: redis_restart(stack, client, state))
            result.check("--scale explain-worker=2: both workers take jobs", lambda: scale_workers(stack, client))
            if not args.gpu:
                result.check("GPU reservation of the worker (docker-compose.yml alone) reaches the engine",
                             lambda: gpu_reservation(args, Path(tmp) / "gpu"))
            if args.skip_bot:
                log("SKIP bot profile: --skip-bot")
            else:
                result.check("bot profile against a fake Bot API: photo -> conclusion + heatmaps",
                             lambda: bot(stack, client))
        except CheckFailed:
            log("stopping: a check the others depend on failed")
        except KeyboardInterrupt:
            log("interrupted")
            result.failed.append("interrupted")
        finally:
            if stack is not None:
                if result.failed:
                    stack.diagnostics()
                result.check("teardown", lambda: teardown(stack))
    log(f"compose-test: {len(result.passed)} passed, {len(result.failed)} failed "
        f"in {time.monotonic() - t_start:.0f} s")
    return 1 if result.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
