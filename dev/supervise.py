"""Run the Procfile's processes under supervisord: ``make up``'s process manager (scripts/up.sh calls this).

    python -m dev.supervise [--data-dir .data] [--workers N] [--dry-run] redis inference explain-api ...

The Procfile stays the one list of what runs (docker compose runs the same entry points); this module turns
the named lines into a supervisord configuration under ``<data-dir>/run/`` and ``exec``s supervisord in the
foreground, so that Ctrl-C reaches it alone. What that buys over a plain process runner:

* a process that dies (crash, OOM kill, SIGKILL) is started again, and only that one: the others keep
  serving. One that dies within ``startsecs`` of starting is retried after 1 s, 2 s, 3 s, ... (supervisord's
  back-off), up to ``startretries`` times, then left FATAL and reported.
* start order by priority: Redis first, then the APIs, then the workers and the bot; stop order the reverse,
  one priority level at a time, so the workers finish their jobs (RQ's warm shutdown on SIGTERM) and
  unregister while Redis is still there, and Redis stops last, writing its append-only file.
* every process in its own process group: Ctrl-C in the terminal goes to supervisord only, which stops the
  rest in order; a stop also reaches what a process started (``stopasgroup``/``killasgroup``).
* ``supervisorctl -c <data-dir>/run/supervisord.conf status`` (or ``restart explain-worker:*``, ``tail -f
  inference``) from another terminal.
* nothing outlives supervisord: each program runs under ``dev.supervised``, which has the kernel signal
  it when supervisord dies, even by SIGKILL (Linux), and records its pid in ``<data-dir>/run/pids``; a new
  ``make up`` first stops whatever recorded process still runs (``stop_leftovers``), so it starts cleanly.

Each process's output goes to this terminal; supervisord's own lines (``spawned``, ``exited``, ``stopped``)
say which process did what. A lock in the run directory keeps a second stack off the same data directory.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import re
import shlex
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dev.supervised import start_time

REPO = Path(__file__).resolve().parents[1]

# Lower starts first and stops last.
PRIORITY = {"redis": 10, "inference": 20, "explain-api": 20, "orthanc": 20, "explain-worker": 30, "web": 40,
            "bot": 40, "pacs": 40}


@dataclass(frozen=True)
class Policy:
    """How supervisord treats one program."""

    startsecs: int = 3  # alive this long = started; dying sooner counts as a failed start (back-off)
    startretries: int = 20  # failed starts in a row before giving up (FATAL)
    stopwaitsecs: int = 10  # SIGTERM, then SIGKILL after this long
    deathsig: str = "TERM"  # what the kernel sends the program when supervisord dies (dev.supervised)


POLICIES = {
    "redis": Policy(startsecs=1),
    # A worker told to stop finishes its job first (RQ's warm shutdown): give it the time. Orphaned by a
    # killed supervisord, though, it must not work on unsupervised: it dies as if killed, and its job is handed
    # to the next worker like any killed worker's.
    "explain-worker": Policy(stopwaitsecs=30, deathsig="KILL"),
}


def read_procfile(path: Path) -> dict[str, str]:
    """``name: command`` lines, comments and blank lines skipped."""
    processes = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([\w-]+):\s*(.+)$", line)
        if match:
            processes[match.group(1)] = match.group(2).strip()
    return processes


def _ini(value: str) -> str:
    """supervisord expands %(name)s in values: a literal % is written %%."""
    return value.replace("%", "%%")


def program_section(name: str, command: str, root: Path, numprocs: int = 1, parent: int | None = None,
                    pids_dir: Path | None = None) -> str:
    """``parent``: supervisord's pid, which the program must not outlive; ``pids_dir``: where it records its
    pid (both default to this process and ``root/.data/run/pids``, for --dry-run)."""
    policy = POLICIES.get(name, Policy())
    parent = os.getpid() if parent is None else parent
    pids_dir = pids_dir or root / ".data" / "run" / "pids"
    # bash runs the Procfile line as it is written (variables, `&&`); the line itself `exec`s the server, so
    # supervisord's signals reach it; dev.supervised ties it to supervisord's life first.
    argv = [sys.executable, "-m", "dev.supervised", "--parent", str(parent), "--signal", policy.deathsig,
            "--pids", str(pids_dir), "--", "/bin/bash", "-c", command]
    lines = [
        f"[program:{name}]",
        f"command={_ini(shlex.join(argv))}",
        f"directory={_ini(str(root))}",
        f"priority={PRIORITY.get(name, 50)}",
        "autostart=true",
        "autorestart=true",
        f"startsecs={policy.startsecs}",
        f"startretries={policy.startretries}",
        "stopsignal=TERM",
        f"stopwaitsecs={policy.stopwaitsecs}",
        "stopasgroup=true",
        "killasgroup=true",
        "redirect_stderr=true",
        "stdout_logfile=/dev/stdout",
        "stdout_logfile_maxbytes=0",
    ]
    if numprocs > 1:
        lines += [f"numprocs={numprocs}", "process_name=%(program_name)s-%(process_num)d"]
    return "\n".join(lines) + "\n"


def supervisord_conf(processes: dict[str, str], names: list[str], run_dir: Path, root: Path,
                     workers: int = 1) -> str:
    unknown = [n for n in names if n not in processes]
    if unknown:
        raise SystemExit(f"not in the Procfile: {', '.join(unknown)} (it has: {', '.join(processes)})")
    run = _ini(str(run_dir))
    # As root, say so: supervisord otherwise logs a CRIT line about not dropping privileges.
    user = "user=root\n" if os.geteuid() == 0 else ""
    head = f"""; Written by `python -m dev.supervise` (make up) on each start; edits are lost.
[supervisord]
nodaemon=true
{user}logfile={run}/supervisord.log
logfile_maxbytes=5MB
logfile_backups=1
pidfile={run}/supervisord.pid
childlogdir={run}
loglevel=info

[unix_http_server]
file={run}/supervisor.sock
chmod=0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{run}/supervisor.sock
"""
    # supervise.py execs supervisord: this pid is supervisord's.
    sections = [program_section(n, processes[n], root, workers if n == "explain-worker" else 1, os.getpid(),
                                run_dir / "pids") for n in names]
    return head + "\n" + "\n".join(sections)


def lock_run_dir(run_dir: Path) -> int:
    """Hold ``run_dir/lock`` for as long as this process (and the supervisord it becomes) lives."""
    fd = os.open(run_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another `make up` already runs on {run_dir.parent}; stop it first, or set "
                         "DISEASEID_DATA_DIR to another directory") from None
    os.set_inheritable(fd, True)  # survives the exec into supervisord
    return fd


def stop_leftovers(pids_dir: Path, grace_s: float = 15.0) -> list[int]:
    """Stop the processes a previous stack recorded (dev.supervised) that still run: SIGTERM, SIGKILL
    after ``grace_s``. Only the very processes recorded (pid and start time match), never a later process
    that reuses a pid. Returns the pids that were still running."""
    if not pids_dir.is_dir():
        return []
    running = []
    for entry in pids_dir.iterdir():
        try:
            pid, started = int(entry.name), entry.read_text().strip()
        except (ValueError, OSError):
            entry.unlink(missing_ok=True)
            continue
        current = start_time(pid)
        if current is not None and current == started:
            running.append(pid)
        else:
            entry.unlink(missing_ok=True)  # gone (or the pid is another process's now)
    if running:
        print(f"make up: stopping {len(running)} process(es) left running by a stack that was killed "
              f"(pids {', '.join(map(str, sorted(running)))})", file=sys.stderr, flush=True)
    deadline = time.monotonic() + grace_s
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in running:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        while any(_alive(pid) for pid in running) and time.monotonic() < deadline:
            time.sleep(0.1)
        deadline = time.monotonic() + 5.0
    for pid in running:
        (pids_dir / str(pid)).unlink(missing_ok=True)
    return running


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent that is gone counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dev.supervise", description=__doc__.split("\n")[0])
    parser.add_argument("processes", nargs="+", help="Procfile process names to run")
    parser.add_argument("--procfile", type=Path, default=REPO / "Procfile")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("DISEASEID_DATA_DIR", REPO / ".data")),
                        help="Redis's append-only file and supervisord's files live here (default: .data)")
    parser.add_argument("--workers", type=int, default=1, help="explain workers to run (default 1)")
    parser.add_argument("--dry-run", action="store_true", help="print the configuration, start nothing")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")

    data_dir = args.data_dir.resolve()
    run_dir = data_dir / "run"
    conf = supervisord_conf(read_procfile(args.procfile), args.processes, run_dir, args.procfile.parent.resolve(),
                            args.workers)
    if args.dry_run:
        sys.stdout.write(conf)
        return 0
    beside = Path(sys.executable).parent / "supervisord"  # the virtual environment's, before any other
    supervisord = str(beside) if os.access(beside, os.X_OK) else shutil.which("supervisord")
    if supervisord is None:
        raise SystemExit("supervisord not found: install the services extra (`make up` does)")
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_run_dir(run_dir)
    stop_leftovers(run_dir / "pids")
    conf_path = run_dir / "supervisord.conf"
    conf_path.write_text(conf)
    # The processes find the data directory (Redis's --dir) through this variable.
    os.environ["DISEASEID_DATA_DIR"] = str(data_dir)
    sys.stdout.flush()
    os.execv(supervisord, [supervisord, "--nodaemon", "--configuration", str(conf_path)])


if __name__ == "__main__":
    raise SystemExit(main())
