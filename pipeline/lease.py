"""Who is writing a document, and whether that writer is still alive.

A document being ingested is ``pending`` and carries its writer's identity (host, pid and
the process's start time) and a lease: a time until which the writer promises to be alive.
The writer renews the lease while it works (``Heartbeat``). Crash recovery removes a
pending document only when its writer is known to be dead:

- on the same host, the process is looked up: dead when no process has that pid, or the
  process with that pid started at another time (the pid was reused), or it is a zombie.
  A live writer on this host is never removed, even when stopped or slow past its lease;
- on another host, the lease is the only evidence: dead once the lease has expired by
  more than ``CLOCK_SKEW_S``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

LEASE_S = 60.0
CLOCK_SKEW_S = 5.0
_HAS_PROC = Path("/proc/self/stat").exists()


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) from /proc, or None if unknown."""
    if not _HAS_PROC:
        return None
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ("X", -1)
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()  # the command name may hold spaces
    return fields[0], int(fields[19])


def process_start(pid: int) -> int:
    """The process's start time (clock ticks since boot, Linux), or 0 where unknown."""
    stat = _proc_stat(pid)
    return stat[1] if stat and stat[1] >= 0 else 0


def process_alive(pid: int, started: int = 0) -> bool:
    """Whether ``pid`` is a live (not zombie) process on this host that started at ``started``
    (0: any start time)."""
    if pid <= 0:
        return False
    stat = _proc_stat(pid)
    if stat is not None:
        state, start = stat
        if state in ("X", "Z"):
            return False
        return not started or not start or start == started
    try:  # no /proc: ask the kernel whether the pid exists
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@cache
def _boot_host() -> str:
    return socket.gethostname()


@dataclass(frozen=True)
class Owner:
    """A writer process: its host name, pid and start time."""

    host: str
    pid: int
    started: int = 0

    @classmethod
    def current(cls) -> Owner:
        pid = os.getpid()
        return cls(_boot_host(), pid, process_start(pid))

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


def owner_is_dead(owner: Owner, lease_until: float, now: float | None = None) -> tuple[bool, str]:
    """(dead?, why) for a pending document's writer."""
    now = time.time() if now is None else now
    if owner.host == _boot_host():
        if process_alive(owner.pid, owner.started):
            return False, f"{owner} is alive"
        return True, f"{owner} is not running"
    if lease_until + CLOCK_SKEW_S < now:
        return True, f"the lease of {owner} expired {now - lease_until:.0f} s ago"
    return False, f"the lease of {owner} runs for {lease_until - now:.0f} s more"


class Heartbeat:
    """Calls ``renew`` every ``interval`` seconds on a daemon thread until stopped."""

    def __init__(self, renew: Callable[[], None], interval: float) -> None:
        self._renew = renew
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="longqa-lease", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._renew()
            except Exception as exc:  # a missed renewal is not fatal: the next one may work
                log.warning("could not renew the ingest lease: %s", exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
