"""A watchdog that kills the Ray processes a launcher started once the launcher is gone.

Run as `python -m study.reaper` with a pipe on stdin. The launcher writes one `PID CREATE_TIME`
line per Ray process it started; when the pipe closes (normal exit, crash, or SIGKILL of the
launcher) the reaper SIGKILLs those processes and their descendants. Ray's helpers can outlive a
killed driver and ignore SIGTERM, hence SIGKILL. Processes are identified by (pid, create time), so
a reused pid is never hit. Descendants are collected while the launcher lives, because a worker
whose raylet dies is re-parented and could no longer be found from it.
"""
from __future__ import annotations

import os
import select
import signal
import sys

import psutil


def _track(known: dict[int, float], pid: int, created: float) -> None:
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - created) > 0.01:
            return
        known[pid] = created
        for child in proc.children(recursive=True):
            known[child.pid] = child.create_time()
    except psutil.Error:
        pass


def _kill(known: dict[int, float]) -> None:
    for pid, created in known.items():
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - created) <= 0.01:
                proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass


def main() -> None:
    # Ignore Ctrl-C and hang-ups: this process must outlive the launcher's terminal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    roots: dict[int, float] = {}
    known: dict[int, float] = {}
    fd = sys.stdin.fileno()
    buf = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 2.0)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break  # the launcher closed the pipe or died
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                pid, created = line.split()
                roots[int(pid)] = float(created)
        for pid, created in roots.items():
            _track(known, pid, created)
    for pid, created in roots.items():
        _track(known, pid, created)
    _kill(known)


if __name__ == "__main__":
    main()
