"""Which `outcrop serve` processes are alive, so that what a dead one left in the store stops counting at once.

A process that writes rows owned by it (stream leases) registers itself in `processes` first: a random id, its
host name, a machine key, its pid with the kernel's start time of that pid, and a heartbeat (`seen_at`) that a
thread of its own moves every HEARTBEAT_S. Any other process judges it:

- on the same machine (same kernel boot and pid namespace; Linux: /proc/sys/kernel/random/boot_id and
  /proc/self/ns/pid; elsewhere the host name): alive while its pid exists, is not a zombie and started when the
  owner's did (a reused pid is another process). A process killed with kill -9 is dead the moment it is gone.
- on another machine (several hosts on one PostgreSQL): alive while its heartbeat is younger than STALE_S.

Each heartbeat also reaps: rows of dead processes are deleted, with whatever `on_reap` callbacks delete of
theirs, in the same transaction. A process judged dead in error (its heartbeat stalled past STALE_S on another
machine) registers again at its next heartbeat; only what was reaped meanwhile is lost.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from outcrop.store.schema import processes

HEARTBEAT_S = 5.0
STALE_S = 30.0  # six missed heartbeats: a process on another machine is dead

log = logging.getLogger("outcrop.store")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def machine_key() -> str:
    """Equal for two processes exactly when their pids mean the same thing: one kernel boot, one pid namespace."""
    host = socket.gethostname()[:60]
    boot = _read("/proc/sys/kernel/random/boot_id")
    if boot:
        try:
            namespace = os.stat("/proc/self/ns/pid").st_ino
        except OSError:
            namespace = 0
        return f"{boot[:40]}/{namespace}/{host}"
    return "host:" + host


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields from the state on (the name before it may hold spaces and parentheses)."""
    text = _read(f"/proc/{pid}/stat")
    return None if text is None else text.rsplit(")", 1)[-1].split()


def pid_started(pid: int) -> str | None:
    """When the kernel started `pid` (clock ticks since boot), where /proc says; None elsewhere."""
    fields = _stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def pid_alive(pid: int, started: str | None) -> bool:
    """Whether the process that registered as (`pid`, `started`) on this machine still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    except (OverflowError, ValueError):
        return False
    if started is None:
        return True  # no /proc where it registered: the pid exists, and that is all there is to know
    fields = _stat(pid)
    if fields is None or len(fields) <= 19:
        return False  # gone between the two looks
    return fields[0] not in ("Z", "X") and fields[19] == started  # a zombie, or the pid now names another process


class ProcessRegistry:
    """This process's row in `processes`, its heartbeat thread, and judging the others."""

    def __init__(self, engine: Engine, *, heartbeat_s: float = HEARTBEAT_S, stale_s: float = STALE_S) -> None:
        self.engine = engine
        self.heartbeat_s = heartbeat_s
        self.stale_s = stale_s
        self.machine = machine_key()
        self.host = socket.gethostname()[:255]
        # run in each heartbeat's transaction, after dead processes' rows are deleted: (db, now, this process's id)
        self.on_reap: list[Callable[[Connection, float, str], None]] = []
        self._lock = threading.Lock()
        self._pid = 0
        self._id = ""
        self._stop = threading.Event()
        self._failing = False
        weakref.finalize(self, self._stop.set)  # the thread ends once nobody holds the registry

    @property
    def id(self) -> str:
        """This process's id, registered in the store (its heartbeat thread started) on first use; a forked child
        gets its own."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    process_id = "p_" + secrets.token_hex(8)
                    self._beat(process_id)  # the row exists before anything that names it as owner
                    self._id, self._pid = process_id, os.getpid()
                    self._stop = threading.Event()
                    weakref.finalize(self, self._stop.set)
                    threading.Thread(target=_heartbeats, args=(weakref.ref(self), self._stop, self.heartbeat_s),
                                     name="outcrop-heartbeat", daemon=True).start()  # fmt: skip
        return self._id

    def alive(self, row: Any, now: float) -> bool:
        """Whether the process of a `processes` row runs (`row`: None when it has no row any more: dead)."""
        if row is None or row.id is None:
            return False
        if row.id == self._id and self._pid == os.getpid():
            return True
        if row.machine == self.machine:
            if not pid_alive(row.pid, row.pid_started):
                return False
            if row.pid_started is not None:
                return True
        return bool(row.seen_at > now - self.stale_s)

    def _beat(self, process_id: str) -> None:
        now = time.time()
        values = {"id": process_id, "host": self.host, "machine": self.machine, "pid": os.getpid(),
                  "pid_started": pid_started(os.getpid()), "started_at": now, "seen_at": now}  # fmt: skip
        upsert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        stmt = upsert(processes).values(**values).on_conflict_do_update(index_elements=["id"], set_={"seen_at": now})
        with self.engine.begin() as db:
            db.execute(stmt)  # a write first: SQLite takes its write lock here, not halfway through
            dead = [r.id for r in db.execute(select(processes)) if not self.alive(r, now)]
            if dead:
                db.execute(delete(processes).where(processes.c.id.in_(dead)))
                log.info("reaped %d dead process(es): %s", len(dead), ", ".join(dead))
            for reap in self.on_reap:
                reap(db, now, process_id)

    def beat(self) -> None:
        """One heartbeat now: this process's row moved, dead processes and what they owned deleted."""
        self._beat(self.id)

    def stop(self) -> None:
        self._stop.set()


def _heartbeats(ref: weakref.ref[ProcessRegistry], stop: threading.Event, interval_s: float) -> None:
    while not stop.wait(interval_s):
        registry = ref()
        if registry is None or registry._pid != os.getpid():
            return
        try:
            registry.beat()
            if registry._failing:
                log.info("heartbeat written again")
            registry._failing = False
        except Exception as exc:
            if not registry._failing:  # once per outage, not every few seconds
                log.warning("could not write this process's heartbeat (%s); retrying", exc)
            registry._failing = True
        del registry
