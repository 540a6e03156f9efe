"""A throwaway PostgreSQL server for the tests: initdb in a temp folder, started on a free port.

CI installs PostgreSQL from Debian's packages (.ci/run); where it is missing outside CI the
PostgreSQL tests are skipped, in CI they fail.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


class PostgresServer:
    """A throwaway PostgreSQL server that can be stopped and started again (fault tests)."""

    def __init__(self, port: int) -> None:
        initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if not initdb or not pg_ctl:
            if os.environ.get("CI"):
                raise RuntimeError("PostgreSQL is not installed; .ci/run should have installed it")
            pytest.skip("PostgreSQL is not installed")
        self.pg_ctl, self.port = pg_ctl, port
        self.root = tempfile.mkdtemp(prefix="outcrop-pg-")
        self.data = os.path.join(self.root, "data")
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(_as_postgres([initdb, "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync"]),
                       check=True, capture_output=True)  # fmt: skip
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = os.path.join(self.root, "log")
        subprocess.run(_as_postgres([self.pg_ctl, "-D", self.data, "-o", opts, "-w", "-l", log, "start"]),
                       check=True, capture_output=True)  # fmt: skip
        deadline = time.monotonic() + 30
        import psycopg

        while True:
            try:
                psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres").close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        """As a crash would: every connection cut, nothing shut down cleanly."""
        subprocess.run(_as_postgres([self.pg_ctl, "-D", self.data, "-m", "immediate", "stop"]), capture_output=True,
                       check=False)  # fmt: skip

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def postgres_server(port: int) -> Iterator[str]:
    with restartable_postgres(port) as server:
        yield server.url


@contextlib.contextmanager
def restartable_postgres(port: int) -> Iterator[PostgresServer]:
    server = PostgresServer(port)
    try:
        server.start()
        yield server
    finally:
        server.remove()


def fresh_database(admin_url: str, name: str) -> str:
    """A new empty database on the server, for one test's isolation."""
    import psycopg

    dsn = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"
