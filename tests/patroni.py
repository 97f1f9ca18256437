"""PostgreSQL under Patroni, with an etcd of its own, on 127.0.0.1: for the fault tests.

``with PatroniCluster(bin_dir, nodes=2) as pg: url = pg.url()`` starts one etcd and *nodes*
PostgreSQL servers, each under a Patroni, in synchronous mode (a commit returns once the standby
has it too), and waits for a primary and a synchronous standby. ``url()`` names every server,
with ``target_session_attrs=read-write``, as a name node in production does. ``kill(node)`` is a
machine lost: SIGKILL to the node's Patroni and to its PostgreSQL. Leaving the block kills every
process it started and removes its directory, whatever happened inside.

Every port is a free one; the servers run as the user ``pydfs.local_postgres`` uses (initdb
refuses root). Timings (``TTL``, ``LOOP_WAIT``, ``RETRY_TIMEOUT``) follow Patroni's rule
``loop_wait + 2 * retry_timeout <= ttl``; a failover takes about ``TTL`` (the dead primary's
leader key expiring) plus a loop.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from pydfs.local_postgres import USER, free_port, server_user

TTL = 10  # seconds the leader key lives without its Patroni renewing it
LOOP_WAIT = 2
RETRY_TIMEOUT = 4
READY = 90.0  # seconds to wait for etcd, a primary, a synchronous standby


def installed() -> str | None:
    """What is missing to run Patroni with etcd, or None."""
    missing = [p for p in ("patroni", "etcd") if shutil.which(p) is None]
    return " and ".join(missing) or None


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.load(resp)


def _wait(what: str, predicate: Any, timeout: float = READY) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _kill(popen: subprocess.Popen[bytes] | None) -> None:
    if popen is not None and popen.poll() is None:
        popen.kill()
        popen.wait()


class Node:
    """One PostgreSQL server under its Patroni."""

    def __init__(self, root: Path, name: str, bin_dir: Path, etcd: str, scope: str) -> None:
        self.name = name
        self.dir = root / name
        self.dir.mkdir(mode=0o700)
        self.port = free_port()
        self.api = f"http://127.0.0.1:{free_port()}"
        self.log = root / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        trust = ["local all all trust", "host all all 127.0.0.1/32 trust"]
        trust.append("host replication all 127.0.0.1/32 trust")
        self.config = {
            "scope": scope,
            "name": name,
            "restapi": {"listen": self.api.removeprefix("http://"), "connect_address": ""},
            "etcd3": {"hosts": etcd},
            "bootstrap": {
                "dcs": {
                    "ttl": TTL,
                    "loop_wait": LOOP_WAIT,
                    "retry_timeout": RETRY_TIMEOUT,
                    "synchronous_mode": True,
                    "postgresql": {"use_pg_rewind": True, "parameters": {"wal_log_hints": "on"}},
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{self.port}",
                "connect_address": f"127.0.0.1:{self.port}",
                "data_dir": str(self.dir / "data"),
                "bin_dir": str(bin_dir),
                "pgpass": str(self.dir / "pgpass"),
                "pg_hba": trust,
                "authentication": {
                    "superuser": {"username": "postgres", "password": "unused"},
                    "replication": {"username": "replicator", "password": "unused"},
                    "rewind": {"username": "postgres", "password": "unused"},
                },
                "parameters": {
                    "unix_socket_directories": str(self.dir),
                    "max_connections": 100,
                    "shared_buffers": "32MB",
                },
            },
        }
        self.config["restapi"]["connect_address"] = self.config["restapi"]["listen"]

    def start(self) -> None:
        path = self.dir / "patroni.json"  # JSON is YAML
        path.write_text(json.dumps(self.config, indent=1))
        with open(self.log, "ab") as log:
            self.popen = subprocess.Popen(
                [*server_user(), "patroni", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def status(self) -> dict[str, Any]:
        """Patroni's view of this node (``role``: master/primary or replica; ``state``)."""
        answer: dict[str, Any] = _get(f"{self.api}/patroni")
        return answer

    @property
    def primary(self) -> bool:
        try:
            status = self.status()
        except (OSError, ValueError):
            return False
        return status.get("role") in ("master", "primary") and status.get("state") == "running"

    def postmaster(self) -> int | None:
        """The pid of this node's PostgreSQL, if it runs (never another process's)."""
        try:
            pid = int((self.dir / "data" / "postmaster.pid").read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return None
        return pid if str(self.dir).encode() in cmdline else None

    def kill(self) -> None:
        """The machine is lost: SIGKILL to Patroni and to PostgreSQL, every process of it."""
        if self.popen is not None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)  # runuser, Patroni
            except ProcessLookupError:
                pass
            self.popen.wait()
            self.popen = None
        pid = self.postmaster()
        if pid is not None:  # its own session (Patroni detaches it): each process by its pid
            children = subprocess.run(
                ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
            ).stdout.split()
            for each in [pid, *map(int, children)]:
                try:
                    os.kill(each, signal.SIGKILL)
                except ProcessLookupError:
                    pass


class Etcd:
    """A one-member etcd cluster."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "etcd"
        self.url = f"http://127.0.0.1:{free_port()}"
        peer = f"http://127.0.0.1:{free_port()}"
        self.argv = [
            "etcd",
            "--name=e0",
            f"--data-dir={self.dir}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=e0={peer}",
        ]
        self.log = root / "etcd.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        _wait("etcd", lambda: _get(f"{self.url}/health")["health"] == "true")


class PatroniCluster:
    """An etcd and *nodes* PostgreSQL servers under Patroni (see the module's docstring)."""

    def __init__(self, bin_dir: Path, nodes: int = 2) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="pydfs-patroni-"))
        self.etcd = Etcd(self.root)
        etcd = self.etcd.url.removeprefix("http://")
        self.nodes = [
            Node(self.root, f"pg{i}", bin_dir, etcd, self.root.name) for i in range(nodes)
        ]
        if server_user():
            for path in [self.root, *(n.dir for n in self.nodes)]:
                shutil.chown(path, USER)

    def url(self, database: str = "postgres") -> str:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)
        return f"postgresql://postgres@{hosts}/{database}?target_session_attrs=read-write"

    def primary(self) -> Node | None:
        return next((n for n in self.nodes if n.primary), None)

    def wait_for_primary(self, timeout: float = READY) -> Node:
        _wait("a primary", lambda: self.primary() is not None, timeout)
        primary = self.primary()
        assert primary is not None
        return primary

    def wait_for_sync_standby(self, timeout: float = READY) -> None:
        """Until a standby streams and the primary waits for it at each commit."""

        def synchronous() -> bool:
            members = _get(f"{self.nodes[0].api}/cluster")["members"]
            return any(
                m["role"] == "sync_standby" and m["state"] in ("running", "streaming")
                for m in members
            )

        _wait("a synchronous standby", synchronous, timeout)

    def start(self) -> PatroniCluster:
        try:
            self.etcd.start()
            for node in self.nodes:
                node.start()
            self.wait_for_primary()
            self.wait_for_sync_standby()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            for node in self.nodes:
                node.kill()
        finally:
            _kill(self.etcd.popen)
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PatroniCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
