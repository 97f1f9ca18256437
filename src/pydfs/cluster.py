"""LocalCluster: name nodes and data nodes as child processes on 127.0.0.1.

Used by ``pydfs cluster up`` and by the integration and fault tests, so that the demo and the
tests start, wait for, kill and restart nodes the same way. Every process binds port 0 (the name
node may ask for a fixed port) and publishes the URL it really bound in ``<data-dir>/<role>.url``;
readiness is that file plus an answered ``/v1/health``, polled against a deadline.

A cluster started with ``namenode_port=None`` keeps the port its name node first got in
``<root>/namenode.port``, so that saved client configs and working directories stay valid across
restarts. The name node binds the port itself (no probe beforehand, which another program's
``SO_REUSEADDR`` socket can fool); when it is taken, the cluster falls back to any free port for
that run and says so in ``notes``.

Several name nodes share one metadata database (``metadata``, a PostgreSQL URL, or "postgres":
a PostgreSQL of the cluster's own, kept in ``<root>/postgres``, started before the name nodes and
stopped after them) and the first one's cluster secret; each has a data directory of its own and
listens on a port of its own (kept in ``<root>/<name>.port`` as the first one's), and every data
node heartbeats to all of them.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydfs.config import DEFAULT_NAMENODE_PORT
from pydfs.errors import InvalidArgument, Unauthenticated, Unavailable

if TYPE_CHECKING:
    from pydfs.client import AsyncClient, Client
    from pydfs.local_postgres import Postgres

READY_TIMEOUT = 30.0


class ProcessFailed(Unavailable):
    """A node process exited while we waited for it."""


@dataclass
class NodeProcess:
    """One server process: start it, wait for it, stop, kill or restart it."""

    role: str  # "namenode" | "datanode"
    name: str
    data_dir: Path
    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    prefix: list[str] = field(default_factory=list)  # e.g. ["ip", "netns", "exec", "ns1"]
    ca: Path | None = None  # verifies the node's certificate when it serves HTTPS
    popen: subprocess.Popen[bytes] | None = None
    url: str = ""

    @property
    def url_file(self) -> Path:
        return self.data_dir / f"{self.role}.url"

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.url_file.unlink(missing_ok=True)
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        cmd = [
            *self.prefix,
            sys.executable,
            "-m",
            "pydfs",
            self.role,
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYDFS_PARENT_PID": str(os.getpid()), **self.env},
                start_new_session=True,  # Ctrl-C reaches the harness, which stops nodes in order
            )

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen is None or self.popen.poll() is not None:
                said = self.said().strip().splitlines()
                last = f": {said[-1].removeprefix('pydfs: error: ')}" if said else ""
                raise ProcessFailed(
                    f"{self.name} exited during start-up{last}; see {self.log_path}"
                )
            if self.url_file.exists():
                url = self.url_file.read_text().strip()
                if url and _healthy(url, self.ca):
                    self.url = url
                    return url
            time.sleep(0.02)
        raise ProcessFailed(f"{self.name} not ready after {timeout:.0f}s; see {self.log_path}")

    def said(self) -> str:
        """What the process has logged since its last start."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(getattr(self, "_log_start", 0))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.popen = None

    def kill(self) -> None:
        """SIGKILL: no clean-up, as in a crash."""
        if self.popen is not None:
            self.popen.kill()
            self.popen.wait()
            self.popen = None

    def restart(self) -> str:
        self.stop()
        self.start()
        return self.wait_ready()


def _tls(ca: Path | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=str(ca)) if ca else None


def _healthy(url: str, ca: Path | None = None) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v1/health", timeout=2, context=_tls(ca)) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


class LocalCluster:
    """``with LocalCluster(tmp_path) as c: ...``: a whole cluster, stopped on exit."""

    def __init__(
        self,
        root: Path,
        datanodes: int = 2,
        *,
        namenode_port: int | None = 0,
        namenode_args: list[str] | None = None,
        datanode_args: list[str] | None = None,
        tls: bool = False,
        metadata: str | None = None,
        namenodes: int = 1,
    ) -> None:
        """*metadata*: the name nodes' ``--metadata`` (default: SQLite in the data directory,
        which only one name node can use), or "postgres": a PostgreSQL of the cluster's own."""
        if namenodes < 1:
            raise InvalidArgument("a cluster needs at least one name node")
        if namenodes > 1 and (metadata is None or metadata == "sqlite"):
            raise InvalidArgument(
                "several name nodes need a shared metadata database: add --metadata postgres "
                "(or a postgresql:// URL)"
            )
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.ca: Path | None = None
        tls_args: list[str] = []
        if tls:
            from pydfs.certs import ensure_local_ca

            local = ensure_local_ca(self.root / "tls")
            self.ca = local.ca
            tls_args = ["--tls-cert", str(local.cert), "--tls-key", str(local.key)]
            tls_args += ["--tls-ca", str(local.ca)]
        self._namenode_args = [*tls_args, *(namenode_args or [])]
        self.metadata = metadata
        self.postgres: Postgres | None = None  # the cluster's own, with metadata="postgres"
        self._datanode_args = [*tls_args, *(datanode_args or [])]
        self._sticky = namenode_port is None  # keep the port the name node first got
        self._port = self._kept_port() if namenode_port is None else namenode_port
        self.notes: list[str] = []  # what a person starting the cluster should hear of
        self.namenodes = [
            NodeProcess(
                "namenode", name, self.root / name, [], self.root / f"{name}.log", ca=self.ca
            )
            for name in ["namenode", *(f"namenode-{i}" for i in range(2, namenodes + 1))]
        ]
        self.namenode = self.namenodes[0]  # the one that makes the secret and the first admin
        self.datanodes: list[NodeProcess] = []
        for _ in range(datanodes):
            self._new_datanode()

    def _new_datanode(self) -> NodeProcess:
        name = f"datanode-{len(self.datanodes) + 1}"
        node = NodeProcess(
            "datanode", name, self.root / name, [], self.root / f"{name}.log", ca=self.ca
        )
        self.datanodes.append(node)
        return node

    @property
    def url(self) -> str:
        return self.namenode.url

    @property
    def urls(self) -> list[str]:
        """Every name node's URL, the first first."""
        return [n.url for n in self.namenodes]

    @property
    def admin_token(self) -> str:
        """The token of the admin user the name node made on its first start."""
        return (self.namenode.data_dir / "admin.token").read_text().strip()

    def client(self, namenode: str | None = None, **options: Any) -> Client:
        """A blocking SDK client of this cluster (of its first name node unless given another
        *namenode*), as its admin unless given another *token*."""
        from pydfs.client import Client

        options = {"token": self.admin_token, "ca": self.ca, **options}
        return Client(namenode or self.url, **options)

    def async_client(self, namenode: str | None = None, **options: Any) -> AsyncClient:
        """An ``AsyncClient`` of this cluster; as ``client``."""
        from pydfs.client import AsyncClient

        options = {"token": self.admin_token, "ca": self.ca, **options}
        return AsyncClient(namenode or self.url, **options)

    @property
    def secret_file(self) -> Path:
        return self.namenode.data_dir / "cluster.secret"

    def _datanode_argv(self) -> list[str]:
        return [
            "--namenode",
            ",".join(self.urls),
            "--port",
            "0",
            "--secret-file",
            str(self.secret_file),
            *self._datanode_args,
        ]

    @property
    def port_file(self) -> Path:
        return self.root / "namenode.port"

    def _kept_port(self, name: str = "namenode", default: int = DEFAULT_NAMENODE_PORT) -> int:
        try:
            return int((self.root / f"{name}.port").read_text())
        except (OSError, ValueError):
            return default  # asked for first, when the directory names none

    def _check_free(self) -> None:
        """Refuse at once, and say why, when another name node holds the directory (its lock
        would make ours exit during start-up)."""
        lock = self.namenode.data_dir / "namenode.lock"
        if not lock.exists():
            return
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                url = f" at {self.namenode.url_file.read_text().strip()}"
            except OSError:
                url = ""
            raise ProcessFailed(
                f"another name node{url} holds {self.namenode.data_dir}: is a cluster already "
                f"running in {self.root}? Stop it first, or give another directory"
            ) from None
        finally:
            os.close(fd)  # closing drops the lock, if it was ours

    def _metadata_args(self) -> list[str]:
        """``--metadata``, starting the cluster's own PostgreSQL first if it has one."""
        if self.metadata is None:
            return []
        if self.metadata != "postgres":
            return ["--metadata", self.metadata]
        from pydfs.local_postgres import Postgres, binaries

        if self.postgres is None:
            bin_dir = binaries()
            if bin_dir is None:
                raise InvalidArgument(
                    "--metadata postgres needs PostgreSQL installed (Debian: apt-get install "
                    "postgresql), or give a postgresql:// URL"
                )
            self.postgres = Postgres(bin_dir, root=self.root / "postgres", fsync=True)
        try:
            self.postgres.start()
        except RuntimeError as exc:
            said = str(exc).strip().splitlines()
            raise ProcessFailed(
                f"PostgreSQL did not start: {said[-1] if said else exc}; "
                f"see {self.postgres.dir / 'server.log'}"
            ) from None
        return ["--metadata", self.postgres.database("pydfs")]

    def _start_namenode(self, node: NodeProcess, port: int, args: list[str]) -> None:
        """Start a name node on the port asked for; if that port is taken, on any free one."""
        node.args = ["--port", str(port), *args]
        node.start()
        try:
            node.wait_ready()
        except ProcessFailed:
            if not port or "address already in use" not in node.said().lower():
                raise
            self.notes.append(
                f"port {port} is taken by another program: {node.name} listens on another "
                "port for this run (clients configured for the old URL need the new one)"
            )
            node.args = ["--port", "0", *args]
            node.start()
            node.wait_ready()
            if self._sticky and (self.root / f"{node.name}.port").exists():
                return  # the cluster's own port is kept for the next start
        if self._sticky:
            (self.root / f"{node.name}.port").write_text(node.url.rsplit(":", 1)[1] + "\n")

    def _start_namenodes(self) -> None:
        self._check_free()
        args = [*self._metadata_args(), *self._namenode_args]
        self._start_namenode(self.namenode, self._port, args)
        for node in self.namenodes[1:]:
            port = self._kept_port(node.name, 0) if self._sticky else 0
            self._start_namenode(node, port, ["--secret-file", str(self.secret_file), *args])

    def start(self) -> LocalCluster:
        try:
            self._start_namenodes()
            for node in self.datanodes:
                node.args = self._datanode_argv()
                node.start()
            for node in self.datanodes:
                node.wait_ready()
            self.wait_for_live(len(self.datanodes))
        except BaseException:
            self.stop()
            raise
        return self

    def add_datanode(
        self, extra_args: list[str] | None = None, prefix: list[str] | None = None
    ) -> NodeProcess:
        """Start one more data node, with arguments of its own (``--capacity``, ``--host``...)."""
        node = self._new_datanode()
        node.args = [*self._datanode_argv(), *(extra_args or [])]
        node.prefix = prefix or []
        node.start()
        node.wait_ready()
        return node

    def restart_namenode(self, index: int = 0) -> None:
        """Restart a name node on the same port, so that data nodes and clients find it."""
        node = self.namenodes[index]
        port = node.url.rsplit(":", 1)[1]
        node.stop()
        node.args = ["--port", port, *node.args[2:]]  # its other arguments stay
        node.start()
        node.wait_ready()

    def datanode_states(self, namenode: int = 0) -> list[dict[str, Any]]:
        """The data nodes as name node *namenode* (an index) sees them."""
        import urllib.error

        request = urllib.request.Request(
            f"{self.namenodes[namenode].url}/v1/cluster/datanodes",
            headers={"Authorization": f"Bearer {self.admin_token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5, context=_tls(self.ca)) as resp:
                nodes: list[dict[str, Any]] = json.load(resp)["nodes"]
                return nodes
        except urllib.error.HTTPError as exc:
            if exc.code not in (401, 403):
                raise
            raise Unauthenticated(
                f"the name node refuses the admin token in {self.namenode.data_dir}/admin.token "
                "(was the admin removed, or its token reset?); to recover, stop the cluster and "
                f"run: pydfs namenode reset-admin --data-dir {self.namenode.data_dir}"
            ) from None

    def wait_for_registered(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until the name node knows every running data node, live, at its current URL."""
        wanted = {n.url for n in self.datanodes if n.running}
        self.wait_until(
            lambda: wanted <= {n["url"] for n in self.datanode_states() if n["state"] == "live"},
            timeout,
            "every running data node registered at its current address",
        )

    def wait_for_live(self, count: int, timeout: float = READY_TIMEOUT) -> None:
        """Wait until every running name node sees *count* live data nodes."""

        def live(index: int) -> int:
            return sum(n["state"] == "live" for n in self.datanode_states(index))

        running = [i for i, n in enumerate(self.namenodes) if n.running]
        self.wait_until(
            lambda: all(live(i) == count for i in running), timeout, f"{count} live data nodes"
        )

    @staticmethod
    def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if predicate():
                    return
            except Unauthenticated:  # an answer that waiting will not change
                raise
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.05)

    def stop(self) -> None:
        for node in self.datanodes:
            node.stop()
        for node in reversed(self.namenodes):
            node.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
