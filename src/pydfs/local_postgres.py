"""A PostgreSQL server of our own on 127.0.0.1, for ``pydfs cluster up --metadata postgres`` and
the tests: ``initdb`` into a directory (a temporary one unless given), started on a free port.

Debian's packages keep the programs in /usr/lib/postgresql/VERSION/bin; initdb refuses to run as
root, so as root the server runs as a system user made for it (``pydfs-pg``). That user must be
able to reach the server's directory: a kept one below a directory it cannot enter (root's home)
lives in /var/lib/pydfs-pg instead, linked from where it was asked for."""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

USER = "pydfs-pg"
RELOCATED = Path("/var/lib/pydfs-pg")  # kept servers' files, as root, when USER cannot reach them


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


def server_user() -> list[str]:
    """The prefix that runs a command as the server's user: ``USER`` (made if missing) when we
    are root, for PostgreSQL refuses to run as root; nothing otherwise."""
    if os.geteuid() != 0:
        return []
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
        capture_output=True,
        check=False,  # exists already: fine
    )
    return ["runuser", "-u", USER, "--"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for servers that cannot report the one they bound)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Postgres:
    """``with Postgres(bin_dir) as pg: url = pg.database()``. Given a *root*, the server's files
    live there and are kept when it stops (a later start finds its databases again), and it
    listens only on a Unix socket there, which only its owner (and root) may reach: it trusts
    whoever connects. Else its files are in a temporary directory removed at the stop, and it
    listens on 127.0.0.1."""

    def __init__(self, bin_dir: Path, *, fsync: bool = False, root: Path | None = None) -> None:
        self.bin = bin_dir
        self.fsync = fsync
        self.keep = root is not None
        self._as = server_user()
        if root is None:
            self.dir = Path(tempfile.mkdtemp(prefix="pydfs-pg-"))
        else:
            root.parent.mkdir(parents=True, exist_ok=True)
            if self._as and not root.is_symlink() and not self._reaches(root.parent):
                _relocate(root)
            root.mkdir(exist_ok=True)
            self.dir = root.resolve()
        if self._as:
            shutil.chown(self.dir, USER)
        self.dir.chmod(0o700)
        self.data = self.dir / "data"
        self.port = 0

    def _reaches(self, directory: Path) -> bool:
        """Whether the server's user may enter *directory* (and so every directory above it)."""
        test = [*self._as, "test", "-x", str(directory)]
        return subprocess.run(test, capture_output=True, check=False).returncode == 0

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self._as, *argv], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stdout}{done.stderr}")

    def start(self, port: int = 0) -> Postgres:
        """Start the server (after ``initdb`` unless its data directory exists) on *port*, or on
        a free one; a kept server on the port it had. A kept server left running by a process
        that died is stopped first."""
        if not (self.data / "PG_VERSION").exists():
            self._initdb()
        elif self.keep:
            self._ctl("stop", "-m", "fast")  # not running: a harmless failure
        kept = self.dir / "port"
        if self.keep and not port and kept.exists():
            port = int(kept.read_text())
        self.port = port or free_port()
        if self.keep:
            kept.write_text(f"{self.port}\n")
        # a kept server trusts whoever reaches its socket, in its own directory (0700)
        listen = "''" if self.keep else "127.0.0.1"
        options = (
            f"-c listen_addresses={listen} -c port={self.port} "
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

    def _ctl(self, *argv: str) -> int:
        ctl = [*self._as, str(self.bin / "pg_ctl"), *argv, "-D", str(self.data)]
        return subprocess.run(ctl, capture_output=True, check=False).returncode

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
        if self.keep:
            return f"postgresql://postgres@/{database}?host={self.dir}&port={self.port}"
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
        """Stop the server: at once for a temporary one (removed), cleanly for a kept one; one
        that stopped already (or crashed) is left as it is."""
        if self.port and self._ctl("status") == 0:
            mode = "fast" if self.keep else "immediate"
            self._run(str(self.bin / "pg_ctl"), "stop", "-m", mode, "-D", str(self.data))
        self.port = 0
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _relocate(root: Path) -> None:
    """Make *root* a link to a directory of its own in ``RELOCATED``."""
    digest = hashlib.sha256(str(root.absolute()).encode()).hexdigest()[:12]
    target = RELOCATED / f"{root.name}-{digest}"
    RELOCATED.mkdir(mode=0o755, exist_ok=True)
    target.mkdir(exist_ok=True)
    root.symlink_to(target)
