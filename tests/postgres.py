"""A throwaway PostgreSQL server for tests: initdb in a temporary folder, pg_ctl start on a
Unix socket only (no TCP port), stopped and deleted afterwards. As root the server runs as
the `postgres` user (Debian's postgresql package creates it): PostgreSQL refuses root."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def find_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@contextmanager
def postgres_server(database: str = "tune") -> Iterator[str]:
    """Start a server; yields a SQLAlchemy URL of `database` on it."""
    initdb, pg_ctl, createdb = (find_bin(n) for n in ("initdb", "pg_ctl", "createdb"))
    if not (initdb and pg_ctl and createdb):
        raise FileNotFoundError("PostgreSQL's initdb/pg_ctl not found: apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="transduce-pg-"))
    user = "postgres" if os.geteuid() == 0 else None
    prefix = ["runuser", "-u", user, "--"] if user else []
    if user:
        shutil.chown(root, user)
    data, sock = root / "data", root / "sock"
    run = lambda *cmd: subprocess.run([*prefix, *cmd], check=True, capture_output=True,
                                      text=True, timeout=120)
    try:
        run("mkdir", str(sock))
        run(initdb, "-D", str(data), "-A", "trust", "-U", "tuner", "--no-sync")
        run(pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
            "-o", f"-k {sock} -c listen_addresses='' -c fsync=off", "start")
        try:
            run(createdb, "-h", str(sock), "-U", "tuner", database)
            yield f"postgresql+psycopg2://tuner@/{database}?host={sock}"
        finally:
            run(pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
