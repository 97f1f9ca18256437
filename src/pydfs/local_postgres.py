"""A PostgreSQL server of our own on 127.0.0.1, for ``pydfs cluster up --metadata postgres`` and
the tests: ``initdb`` into a directory (a temporary one unless given), started on a free port.

Debian's packages keep the programs in /usr/lib/postgresql/VERSION/bin; initdb refuses to run as
root, so as root the server runs as a system user made for it (``pydfs-pg``)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

USER = "pydfs-pg"


def binaries() -> Path | None:
    """The directory holding initdb and pg_ctl, or None if PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Postgres:
    """``with Postgres(bin_dir) as pg: url = pg.database()``. Given a *root*, the server's files
    live there and are kept when it stops (a later start finds its databases again); else in a
    temporary directory removed at the stop."""

    def __init__(self, bin_dir: Path, *, fsync: bool = False, root: Path | None = None) -> None:
        self.bin = bin_dir
        self.fsync = fsync
        self.keep = root is not None
        if root is None:
            self.dir = Path(tempfile.mkdtemp(prefix="pydfs-pg-"))
        else:
            self.dir = root
            self.dir.mkdir(parents=True, exist_ok=True)
        self.data = self.dir / "data"
        self.port = 0
        self._as: list[str] = []
        if os.geteuid() == 0:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                capture_output=True,
                check=False,  # exists already: fine
            )
            shutil.chown(self.dir, USER)
            self._as = ["runuser", "-u", USER, "--"]
        self.dir.chmod(0o700)

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self._as, *argv], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stdout}{done.stderr}")

    def start(self, port: int = 0) -> Postgres:
        """Start the server (after ``initdb`` unless its data directory exists) on *port*, or on
        a free one."""
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        self.port = port or _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.dir} -c max_connections=200 "
            f"-c fsync={'on' if self.fsync else 'off'} -c deadlock_timeout=50ms "
            "-c shared_buffers=128MB"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "start",
            "-w",
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "server.log"),
            "-o",
            options,
        )
        return self

    def _initdb(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            *([] if self.fsync else ["--no-sync"]),
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def database(self, name: str | None = None) -> str:
        """The URL of database *name* (made if missing), or of a new, empty one."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        if not self.sql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
            self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def sql(self, statement: str, database: str = "postgres") -> str:
        psql = [str(self.bin / "psql"), "-X", "-qAt", "-v", "ON_ERROR_STOP=1"]
        done = subprocess.run(
            [*psql, self.url(database), "-c", statement],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr}")
        return done.stdout.strip()

    def stop(self) -> None:
        """Stop the server: at once for a temporary one (removed), cleanly for a kept one."""
        if self.port:
            mode = "fast" if self.keep else "immediate"
            self._run(str(self.bin / "pg_ctl"), "stop", "-m", mode, "-D", str(self.data))
            self.port = 0
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
