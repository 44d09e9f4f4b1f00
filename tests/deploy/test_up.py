"""`make up` end to end: scripts/up.sh starts the Procfile under honcho, the printed curl example answers,
and Ctrl-C leaves no process behind.

Every process the script starts inherits a marker variable, so the test finds all of them (also ones in
other sessions, as honcho puts each Procfile process in its own) by reading ``/proc/<pid>/environ``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.services.conftest import REPO, free_port

UP = REPO / "scripts" / "up.sh"
READY_TIMEOUT_S = 90
# What up.sh reads: none may leak in from the environment of whoever runs the tests.
UP_VARIABLES = {"TELEGRAM_BOT_TOKEN", "REDIS_URL", "INFERENCE_URL", "EXPLAIN_URL", "DISEASEID_API_KEYS",
                "DISEASEID_API_KEY", "REDIS_PORT", "INFERENCE_PORT", "EXPLAIN_PORT", "BIND_HOST",
                "EXPLAIN_WORKERS", "SAMPLE"}

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")


def base_env(**overrides: str) -> dict[str, str]:
    """Our environment without anything that would change what up.sh starts, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if k not in UP_VARIABLES}
    # A developer's .env must not change the test.
    env["DISEASEID_ENV_FILE"] = "/nonexistent/.env"
    env["DISEASEID_TORCH_THREADS"] = "1"
    return {**env, **overrides}


def processes_marked(marker: str) -> list[int]:
    """PIDs of live processes whose environment holds ``marker`` (zombies excluded)."""
    needle = marker.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes() and " Z " not in (entry / "stat").read_text():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours
            continue
    return found


def kill_marked(marker: str) -> None:
    for pid in processes_marked(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class Stack:
    proc: subprocess.Popen
    log_path: Path
    marker: str
    inference_url: str
    explain_url: str
    redis_port: int

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        pending = {self.inference_url + "/readyz", self.explain_url + "/readyz"}
        while pending:
            assert self.proc.poll() is None, (
                f"up.sh exited with {self.proc.returncode}:\n{self.log_text()[-4000:]}")
            for url in list(pending):
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        pending.discard(url)
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready after {timeout} s: {pending}\n{self.log_text()[-4000:]}")
            time.sleep(0.25)


@pytest.fixture
def stack() -> Iterator[Stack]:
    marker = f"DISEASEID_UP_TEST={uuid.uuid4().hex}"
    ports = {"REDIS_PORT": free_port(), "INFERENCE_PORT": free_port(), "EXPLAIN_PORT": free_port()}
    env = base_env(**{k: str(v) for k, v in ports.items()},
                   # One model in the worker keeps the start short; the service itself is unchanged.
                   DISEASEID_EXPLAIN_PRELOAD="tumor/student")
    env[marker.split("=")[0]] = marker.split("=")[1]
    log = tempfile.NamedTemporaryFile(prefix="make-up-", suffix=".log", delete=False)
    proc = subprocess.Popen([str(UP)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    stack = Stack(proc, Path(log.name), marker, f"http://127.0.0.1:{ports['INFERENCE_PORT']}",
                  f"http://127.0.0.1:{ports['EXPLAIN_PORT']}", ports["REDIS_PORT"])
    try:
        yield stack
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        kill_marked(marker)  # whatever honcho left, in whatever session
        log.close()
        os.unlink(log.name)


def printed_commands(banner: str) -> list[str]:
    """The copy-paste example lines: every banner line that starts with ``curl`` or ``job=``."""
    return [line.strip() for line in banner.splitlines() if line.strip().startswith(("curl ", "job="))]


def run_printed(lines: list[str], timeout: float = 60) -> str:
    """The lines as a user would paste them into bash, in the repo root; returns stdout."""
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(lines)], cwd=REPO,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{lines}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.slow
def test_up_serves_predict_and_explain_and_ctrl_c_leaves_nothing(stack: Stack) -> None:
    stack.wait_ready()
    banner = stack.log_text()
    assert stack.inference_url in banner and stack.explain_url in banner
    commands = printed_commands(banner)
    assert len(commands) == 4, banner

    if shutil.which("curl"):
        predict = json.loads(run_printed(commands[:1]))
        # Submit and long-poll (the fourth line, which saves panel.png, is checked below over httpx).
        job = json.loads(run_printed(commands[1:3], timeout=90))
    else:  # the same requests without curl
        sample = re.search(r"file=@(\S+)", commands[0]).group(1)
        with open(sample, "rb") as f:
            data = f.read()
        predict = httpx.post(stack.inference_url + "/predict", data={"task": "tumor"},
                             files={"file": ("slice.jpg", data, "image/jpeg")}, timeout=60).json()
        accepted = httpx.post(stack.explain_url + "/explain", data={"task": "tumor"},
                              files={"file": ("slice.jpg", data, "image/jpeg")}, timeout=60).json()
        job = httpx.get(f"{stack.explain_url}/explain/{accepted['job_id']}", params={"wait": 30},
                        timeout=60).json()

    assert predict["task"] == "tumor" and set(predict["probabilities"]) == {
        "glioma", "meningioma", "notumor", "pituitary"}
    assert job["status"] == "finished", job
    panel = httpx.get(f"{stack.explain_url}/explain/{job['job_id']}/panel.png", timeout=30)
    assert panel.status_code == 200 and panel.content.startswith(b"\x89PNG")

    # Ctrl-C: the terminal sends SIGINT to the foreground group, which holds honcho (up.sh exec'd it).
    assert processes_marked(stack.marker), "the marker should find the running processes"
    started = time.monotonic()
    os.killpg(stack.proc.pid, signal.SIGINT)
    assert stack.proc.wait(20) == 130  # honcho's exit status after SIGINT
    stopped_in = time.monotonic() - started
    deadline = time.monotonic() + 5  # the kernel may take a moment to reap PDEATHSIG'd children
    while (left := processes_marked(stack.marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"orphans after Ctrl-C: {left}\n{stack.log_text()[-3000:]}"
    log = stack.log_text()
    assert "warm shut down requested" in log  # the worker was asked to stop, not just killed
    assert "redis.1 stopped (rc=0)" in log  # Redis shut down after its clients left
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", stack.redis_port)) != 0, "Redis still listening"
    assert stopped_in < 15


# -- the plan, without starting anything -------------------------------------------------------------

def dry_run(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(UP), "--dry-run"], cwd=REPO, env=base_env(**env), capture_output=True,
                          text=True, timeout=30)


def ports_env() -> dict[str, str]:
    return {name: str(free_port()) for name in ("REDIS_PORT", "INFERENCE_PORT", "EXPLAIN_PORT")}


def honcho_processes(result: subprocess.CompletedProcess) -> list[str]:
    command = next(line for line in result.stdout.splitlines() if line.startswith("would run:"))
    return command.split("explain-worker=")[1].split()[1:]


def test_dry_run_starts_the_four_processes_without_a_token() -> None:
    result = dry_run(**ports_env())
    assert result.returncode == 0, result.stderr
    assert honcho_processes(result) == ["redis", "inference", "explain-api", "explain-worker"]
    assert "set TELEGRAM_BOT_TOKEN" in result.stdout


def test_dry_run_adds_the_bot_with_a_token_and_an_api_key_for_it() -> None:
    result = dry_run(**ports_env(), TELEGRAM_BOT_TOKEN="123:abc", DISEASEID_API_KEYS=" key-one ,key-two",
                     EXPLAIN_WORKERS="3")
    assert result.returncode == 0, result.stderr
    assert honcho_processes(result) == ["redis", "inference", "explain-api", "explain-worker", "bot"]
    assert "--concurrency explain-worker=3" in result.stdout
    assert '-H "X-API-Key: $DISEASEID_API_KEY"' in result.stdout
    assert "key-one" not in result.stdout  # keys are never printed


def test_dry_run_uses_an_external_redis_url_instead_of_starting_one() -> None:
    result = dry_run(**ports_env(), REDIS_URL="redis://10.0.0.5:6379/2")
    assert result.returncode == 0, result.stderr
    assert "redis" not in honcho_processes(result)
    assert "redis://10.0.0.5:6379/2" in result.stdout


def test_a_port_you_set_must_be_free() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        result = dry_run(**{**ports_env(), "INFERENCE_PORT": str(taken)})
    assert result.returncode == 1
    assert f"INFERENCE_PORT={taken} is already in use" in result.stderr


def test_env_file_fills_in_what_the_environment_does_not_set(tmp_path: Path) -> None:
    ports = ports_env()
    env_file = tmp_path / ".env"
    env_file.write_text(f"# comment\nexport INFERENCE_PORT={ports['INFERENCE_PORT']}\n"
                        f"EXPLAIN_PORT='{free_port()}'\nINFERENCE_URL=http://inference:8000\n")
    result = dry_run(REDIS_PORT=ports["REDIS_PORT"], EXPLAIN_PORT=ports["EXPLAIN_PORT"],
                     DISEASEID_ENV_FILE=str(env_file))
    assert result.returncode == 0, result.stderr
    assert f"http://127.0.0.1:{ports['INFERENCE_PORT']}/predict" in result.stdout  # from the file
    assert f"http://127.0.0.1:{ports['EXPLAIN_PORT']}/explain" in result.stdout  # the environment wins
    assert "http://inference:8000" not in result.stdout  # the local stack always talks to itself
