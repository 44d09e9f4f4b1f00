"""Run one of ``make up``'s programs so that it cannot outlive supervisord (dev/supervise.py writes each
program's command as this wrapper around the Procfile line):

    python -m dev.supervised --parent PID --signal TERM --pids DIR -- /bin/bash -c 'exec ...'

supervisord stops its programs when it is told to stop; killed outright (SIGKILL, the OOM killer) it can tell
nobody, and its programs would run on unsupervised, holding the ports and the data directory, so that the next
``make up`` could not start. Two guards:

* On Linux the wrapper asks the kernel (``prctl(PR_SET_PDEATHSIG)``) to send the program ``--signal`` when
  supervisord dies, then ``exec``s the command: the setting survives the exec, and the Procfile line ``exec``s
  its server in turn, so the server itself is the process the signal reaches. Should supervisord already be
  gone by then (its pid is not our parent's), the wrapper exits at once.
* It leaves its pid and start time in ``--pids``; the next ``make up`` (dev/supervise.py) stops whatever
  listed process still runs (it takes a moment to exit, or the platform has no PDEATHSIG) before it starts.

Standard library only: this runs before every start of every program.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): with the pid, it names
    one process, never a later one that reuses the pid. None where there is no /proc entry."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def record(pids_dir: Path) -> None:
    pids_dir.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    (pids_dir / str(pid)).write_text(start_time(pid) or "")


def die_with(parent: int, sig: int) -> None:
    """Have the kernel send ``sig`` to this process when ``parent`` (which forked it) dies."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
        raise SystemExit(f"prctl(PR_SET_PDEATHSIG) failed: errno {ctypes.get_errno()}")
    if os.getppid() != parent:  # supervisord died before the kernel could be asked
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dev.supervised", description=__doc__.split("\n")[0])
    parser.add_argument("--parent", type=int, required=True, help="supervisord's pid")
    parser.add_argument("--signal", default="TERM", help="sent when supervisord dies (TERM, KILL, INT)")
    parser.add_argument("--pids", type=Path, required=True, help="folder for this process's pid file")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to exec")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    record(args.pids)
    die_with(args.parent, signal.Signals[f"SIG{args.signal.upper()}"])
    os.execvp(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
