"""`make up` end to end: scripts/up.sh runs the Procfile under supervisord, the printed curl example
answers, a SIGKILLed process comes back without taking the others down or losing a job, and Ctrl-C leaves no
process behind.

Every process the script starts inherits a marker variable, so the test finds all of them (also ones in
other sessions and process groups) by reading ``/proc/<pid>/environ``. One stack serves the module; the
tests run in file order and the last one stops it with Ctrl-C.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from supervisor.xmlrpc import SupervisorTransport

from tests.deploy.processes import child_pids
from tests.helpers import free_port
from tests.services.conftest import REPO, fixture_bytes

UP = REPO / "scripts" / "up.sh"
READY_TIMEOUT_S = 90
# What up.sh reads: none may leak in from the environment of whoever runs the tests.
UP_VARIABLES = {"TELEGRAM_BOT_TOKEN", "REDIS_URL", "INFERENCE_URL", "EXPLAIN_URL", "DISEASEID_API_KEYS",
                "DISEASEID_API_KEY", "REDIS_PORT", "INFERENCE_PORT", "EXPLAIN_PORT", "WEB_PORT", "BIND_HOST",
                "EXPLAIN_WORKERS", "SAMPLE", "DISEASEID_DATA_DIR"}
# Short heartbeats and recovery timings (as in tests/services/explain_stack.py): a killed worker's job is
# handed to its successor within seconds; each job sleeps a second, so a kill lands mid-job.
FAST_RECOVERY = {
    "DISEASEID_EXPLAIN_HEARTBEAT_INTERVAL_S": "0.5",
    "DISEASEID_EXPLAIN_ABANDONED_GRACE_S": "1",
    "DISEASEID_EXPLAIN_MAINTENANCE_INTERVAL_S": "1",
    "DISEASEID_EXPLAIN_IDLE_POLL_S": "1",
    "DISEASEID_EXPLAIN_WORKER_TTL_S": "5",
    "DISEASEID_EXPLAIN_DEBUG_DELAY_S": "1",
}

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")


def base_env(**overrides: str) -> dict[str, str]:
    """Our environment without anything that would change what up.sh starts, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if k not in UP_VARIABLES}
    # A developer's .env must not change the test.
    env["DISEASEID_ENV_FILE"] = "/nonexistent/.env"
    env["DISEASEID_TORCH_THREADS"] = "1"
    env["PACS"] = "off"  # no Orthanc even where it is installed (tests/pacs/test_make_up.py covers it)
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


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


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
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict, repr=False)
    _rpc: xmlrpc.client.ServerProxy | None = field(default=None, repr=False)

    def launch(self) -> None:
        """``scripts/up.sh`` (again), as `make up` runs it, writing to the same log."""
        # Append mode: supervisord and each process write to this file through their own descriptors.
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([str(UP)], cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self._rpc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT_S, explain: bool = True) -> None:
        deadline = time.monotonic() + timeout
        pending = {self.inference_url + "/readyz"} | ({self.explain_url + "/readyz"} if explain else set())
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

    # -- supervisord, over its XML-RPC socket (what supervisorctl uses) ----------------------------------
    def supervisor(self):
        if self._rpc is None:
            socket_path = self.data_dir / "run" / "supervisor.sock"
            self._rpc = xmlrpc.client.ServerProxy(
                "http://127.0.0.1", transport=SupervisorTransport(None, None, f"unix://{socket_path}"))
        return self._rpc.supervisor

    def processes(self) -> dict[str, dict]:
        return {info["name"]: info for info in self.supervisor().getAllProcessInfo()}

    def pid(self, name: str) -> int:
        return self.processes()[name]["pid"]

    def wait_restarted(self, name: str, old_pid: int, timeout: float = 30) -> int:
        """The new pid, once supervisord runs ``name`` again under a pid other than ``old_pid``."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.processes()[name]
            if info["statename"] == "RUNNING" and info["pid"] not in (0, old_pid):
                return info["pid"]
            assert time.monotonic() < deadline, f"{name} not back after {timeout} s: {info}"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    marker = f"DISEASEID_UP_TEST={uuid.uuid4().hex}"
    ports = {"REDIS_PORT": free_port(), "INFERENCE_PORT": free_port(), "EXPLAIN_PORT": free_port(),
             "WEB_PORT": free_port()}
    # A short path: supervisord's unix socket lives under it (at most 107 bytes).
    data_dir = Path(tempfile.mkdtemp(prefix="dz-up-"))
    env = base_env(**{k: str(v) for k, v in ports.items()}, **FAST_RECOVERY,
                   DISEASEID_DATA_DIR=str(data_dir),
                   # One model in the worker keeps the start short; the service itself is unchanged.
                   DISEASEID_EXPLAIN_PRELOAD="tumor/student")
    env[marker.split("=")[0]] = marker.split("=")[1]
    log_path = Path(tempfile.mkstemp(prefix="make-up-", suffix=".log")[1])
    stack = Stack(None, log_path, marker, f"http://127.0.0.1:{ports['INFERENCE_PORT']}",
                  f"http://127.0.0.1:{ports['EXPLAIN_PORT']}", ports["REDIS_PORT"], data_dir, env)
    stack.launch()
    try:
        yield stack
    finally:
        proc = stack.proc  # the stack may have been started again
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        kill_marked(marker)  # whatever supervisord left, in whatever process group
        log_path.unlink()
        shutil.rmtree(data_dir, ignore_errors=True)


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
def test_up_serves_predict_and_explain(stack: Stack) -> None:
    stack.wait_ready()
    banner = stack.log_text()
    assert stack.inference_url in banner and stack.explain_url in banner
    commands = printed_commands(banner)
    assert len(commands) == 4, banner
    assert "-o /tmp/" in commands[3]  # the example writes the panel outside the checkout

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

    # The web page at the address the banner prints (it starts in a second; the models took longer).
    page_url = re.search(r"web page\s+(http://\S+)", banner).group(1)
    deadline = time.monotonic() + 30
    while True:
        try:
            page = httpx.get(page_url + "/", timeout=5)
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline, stack.log_text()[-3000:]
            time.sleep(0.5)
    assert page.status_code == 200 and 'id="analyse"' in page.text


class Pinger(threading.Thread):
    """POSTs a slice to /predict every 0.2 s until stopped; keeps every answer that was not a 200."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.stop, self.ok, self.failures = url, threading.Event(), 0, []
        self.image = fixture_bytes("tumor", "notumor")

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.wait(0.2):
                try:
                    r = client.post(self.url + "/predict", data={"task": "tumor"},
                                    files={"file": ("s.jpg", self.image, "image/jpeg")})
                    if r.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(r.status_code)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))


def explain(client: httpx.Client, image: bytes) -> str:
    r = client.post("/explain", data={"task": "tumor", "methods": "gradcam"},
                    files={"file": ("s.jpg", image, "image/jpeg")})
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def job_status(client: httpx.Client, job_id: str, wait: float = 0) -> str:
    """The job's status; transient refusals (API restarting, Redis away) read as "unreachable"."""
    try:
        r = client.get(f"/explain/{job_id}", params={"wait": wait})
    except httpx.HTTPError:
        return "unreachable"
    if r.status_code == 503:
        return "unreachable"
    assert r.status_code == 200, r.text  # a 404 would be a lost job
    return r.json()["status"]


def wait_finished(client: httpx.Client, job_ids: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for job_id in job_ids:
        while (status := job_status(client, job_id, wait=5)) != "finished":
            assert status != "failed", f"job {job_id} failed"
            assert time.monotonic() < deadline, f"job {job_id} still {status}"
            time.sleep(0.2)


@pytest.mark.slow
def test_sigkill_of_each_process_restarts_it_alone_and_loses_no_job(stack: Stack) -> None:
    stack.wait_ready()
    images = [fixture_bytes("tumor", cls, i) for cls in ("glioma", "meningioma") for i in range(2)]
    pinger = Pinger(stack.inference_url)
    pinger.start()
    with httpx.Client(base_url=stack.explain_url, timeout=30) as client:
        done = explain(client, images[0])
        wait_finished(client, [done])
        pending = [explain(client, image) for image in images[1:]]
        deadline = time.monotonic() + 20
        while job_status(client, pending[0]) != "started":  # the kill lands mid-job
            assert time.monotonic() < deadline
            time.sleep(0.05)

        # The worker (mid-job) and Redis itself (the server, under its wrapper) at once.
        worker, redis_wrapper = stack.pid("explain-worker"), stack.pid("redis")
        (redis_server,) = child_pids(redis_wrapper)
        killed_at = time.monotonic()
        os.kill(worker, signal.SIGKILL)
        os.kill(redis_server, signal.SIGKILL)
        stack.wait_restarted("redis", redis_wrapper)
        # Readiness counts live workers only: the dead one's heartbeat goes stale while its successor loads.
        while True:
            r = client.get("/readyz")
            if r.status_code == 503:
                assert r.json()["error"]["code"] in ("not_ready", "queue_unavailable"), r.text
                break
            assert time.monotonic() - killed_at < 8, "/readyz kept counting the killed worker"
            time.sleep(0.1)
        stack.wait_restarted("explain-worker", worker)

        # Then the explain API.
        api = stack.pid("explain-api")
        os.kill(api, signal.SIGKILL)
        stack.wait_restarted("explain-api", api)
        stack.wait_ready()

        # Nothing lost: the finished job kept its results through the Redis restart, the interrupted and
        # the queued ones finish.
        wait_finished(client, [done, *pending])
        panel = client.get(f"/explain/{done}/panel.png")
        assert panel.status_code == 200 and panel.content.startswith(b"\x89PNG")
    pinger.stop.set()
    pinger.join()
    assert pinger.ok > 0 and not pinger.failures, f"inference stopped answering: {pinger.failures}"

    # Inference itself comes back too.
    inference = stack.pid("inference")
    os.kill(inference, signal.SIGKILL)
    stack.wait_restarted("inference", inference)
    stack.wait_ready()
    log = stack.log_text()
    for name in ("explain-worker", "redis", "explain-api", "inference"):
        assert f"exited: {name} (" in log and "not expected" in log, name


@pytest.mark.slow
def test_sigkill_of_supervisord_leaves_no_orphan_and_make_up_starts_again(stack: Stack) -> None:
    stack.wait_ready()
    with httpx.Client(base_url=stack.explain_url, timeout=30) as client:
        done = explain(client, fixture_bytes("tumor", "pituitary"))
        wait_finished(client, [done])
    programs = {name: info["pid"] for name, info in stack.processes().items()}
    assert {"redis", "inference", "explain-api", "explain-worker"} <= set(programs), programs
    assert all(programs.values()), programs
    (redis_server,) = child_pids(programs["redis"])
    # up.sh exec'd dev.supervise, which exec'd supervisord: the pid up.sh started with is supervisord's.
    os.kill(stack.proc.pid, signal.SIGKILL)
    stack.proc.wait(10)
    killed_at = time.monotonic()
    # Redis waits up to 3 s for its clients to leave, then writes its file; a loaded 2-core box needs more.
    # Dead, not merely unmarked: at most a zombie left for PID 1 to reap (the pids went to it, not to us). A
    # process still freeing its memory has no environment left to read yet is not a zombie: wait for both.
    deadline = killed_at + 30
    pids = [*programs.values(), redis_server]
    while ((left := processes_marked(stack.marker)) or (alive := [pid for pid in pids if running(pid)])) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"orphans {left} of {programs} (redis-server {redis_server}) after SIGKILL of supervisord"
    assert not alive, f"{alive} of {programs} (redis-server {redis_server}) still running after SIGKILL of supervisord"

    # `make up` again, on the same ports and data directory: it starts, and the finished job is still there.
    stack.launch()
    stack.wait_ready()
    with httpx.Client(base_url=stack.explain_url, timeout=30) as client:
        assert job_status(client, done) == "finished"
        panel = client.get(f"/explain/{done}/panel.png")
        assert panel.status_code == 200 and panel.content.startswith(b"\x89PNG")


def test_make_up_stops_what_a_killed_stack_left_running(tmp_path: Path) -> None:
    """The second guard (where PDEATHSIG did not fire, or a process is slow to go): the processes the last
    stack recorded that still run are stopped before the new one starts; others are left alone."""
    from dev.supervise import stop_leftovers
    from dev.supervised import start_time

    pids = tmp_path / "pids"
    # Recorded by dev.supervised, as each program of the killed stack was.
    leftover = subprocess.Popen([sys.executable, "-m", "dev.supervised", "--parent",
                                 str(os.getpid()), "--pids", str(pids), "--", "sleep", "60"], cwd=REPO)
    bystander = subprocess.Popen(["sleep", "60"])
    (pids / str(bystander.pid)).parent.mkdir(exist_ok=True)
    (pids / str(bystander.pid)).write_text("1")  # same pid, another start time: not the recorded process
    deadline = time.monotonic() + 10
    while not (pids / str(leftover.pid)).exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (pids / str(leftover.pid)).read_text() == start_time(leftover.pid)
    try:
        assert stop_leftovers(pids, grace_s=5) == [leftover.pid]
        assert leftover.wait(5) == -signal.SIGTERM
        assert bystander.poll() is None and list(pids.iterdir()) == []
    finally:
        for proc in (leftover, bystander):
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_ctrl_c_stops_everything_in_order(stack: Stack) -> None:
    if stack.proc.poll() is not None:  # a test before this one killed the stack and failed before its restart
        stack.launch()
    stack.wait_ready()
    # Ctrl-C: the terminal sends SIGINT to the foreground group, which holds supervisord (up.sh exec'd
    # it); every process it runs sits in a group of its own, so supervisord alone decides the order.
    assert processes_marked(stack.marker), "the marker should find the running processes"
    started = time.monotonic()
    os.killpg(stack.proc.pid, signal.SIGINT)
    assert stack.proc.wait(90) == 0  # generous: a loaded 2-core machine was seen to need over 30 s
    stopped_in = time.monotonic() - started
    deadline = time.monotonic() + 5  # the kernel may take a moment to reap PDEATHSIG'd children
    while (left := processes_marked(stack.marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"orphans after Ctrl-C: {left}\n{stack.log_text()[-3000:]}"
    log = stack.log_text()
    assert "warm shut down requested" in log  # the worker was asked to stop, not just killed
    # Redis stopped last, cleanly, after everything that talks to it.
    stops = re.findall(r"stopped: ([\w-]+) \((.*?)\)", log)
    assert [name for name, _ in stops][-1] == "redis" and stops[-1][1] == "exit status 0", stops
    assert list(stack.data_dir.glob("redis/appendonly.aof*")), "Redis kept no append-only file"
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", stack.redis_port)) != 0, "Redis still listening"
    assert stopped_in < 60  # stops are bounded by supervisord's stopwaitsecs (10 s, the worker 30 s)


# -- the plan, without starting anything -------------------------------------------------------------

def dry_run(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(UP), "--dry-run"], cwd=REPO, env=base_env(**env), capture_output=True,
                          text=True, timeout=30)


def ports_env() -> dict[str, str]:
    return {name: str(free_port()) for name in ("REDIS_PORT", "INFERENCE_PORT", "EXPLAIN_PORT", "WEB_PORT")}


def supervised_processes(result: subprocess.CompletedProcess) -> list[str]:
    command = next(line for line in result.stdout.splitlines() if line.startswith("would run:"))
    return re.split(r"--workers \d+ ", command)[1].split()


def test_dry_run_starts_the_five_processes_without_a_token() -> None:
    ports = ports_env()
    result = dry_run(**ports)
    assert result.returncode == 0, result.stderr
    assert supervised_processes(result) == ["redis", "inference", "explain-api", "explain-worker", "web"]
    assert "set TELEGRAM_BOT_TOKEN" in result.stdout
    assert f"web page    http://127.0.0.1:{ports['WEB_PORT']} " in result.stdout  # the page's address


def test_dry_run_adds_the_bot_with_a_token_and_an_api_key_for_it() -> None:
    result = dry_run(**ports_env(), TELEGRAM_BOT_TOKEN="123:abc", DISEASEID_API_KEYS=" key-one ,key-two",
                     EXPLAIN_WORKERS="3")
    assert result.returncode == 0, result.stderr
    assert supervised_processes(result) == ["redis", "inference", "explain-api", "explain-worker", "web", "bot"]
    assert "--workers 3" in result.stdout
    assert '-H "X-API-Key: $DISEASEID_API_KEY"' in result.stdout
    assert "key-one" not in result.stdout  # keys are never printed


def test_dry_run_uses_an_external_redis_url_instead_of_starting_one() -> None:
    result = dry_run(**ports_env(), REDIS_URL="redis://10.0.0.5:6379/2")
    assert result.returncode == 0, result.stderr
    assert "redis" not in supervised_processes(result)
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
