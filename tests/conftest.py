"""Shared fixtures: real clusters on loopback through pydfs.cluster.LocalCluster, and the CLI.

``pytest --store postgres`` keeps the metadata of every cluster the tests start in PostgreSQL
(a database of the session's own server) instead of SQLite, unless a test picks its store;
tests marked ``sqlite_only`` are skipped then."""

from __future__ import annotations

import hashlib
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pydfs.checksum import BlockChecksums
from pydfs.cluster import LocalCluster, NodeProcess
from pydfs.datanode.blockstore import block_file
from pydfs.local_postgres import Postgres, binaries

# Fast liveness for tests: heartbeats every 0.2 s, dead after 1.5 s of silence.
HEARTBEAT = "0.2"
DEAD_AFTER = "1.5"
BLOCK_SIZE = 256 * 1024  # small blocks, so that ordinary test files span several

# The session's PostgreSQL server under ``--store postgres`` (set by ``cluster_store``).
_store_server: Postgres | None = None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="where the clusters the tests start keep their metadata, unless a test picks its "
        "store: sqlite (default, in the name node's data directory) or postgres (a database "
        "of a PostgreSQL server started for the session; tests marked sqlite_only are skipped)",
    )


NO_POSTGRES = "PostgreSQL is not installed (apt-get install postgresql)"


def pytest_configure(config: pytest.Config) -> None:
    """``--store postgres`` without PostgreSQL: an error under CI, which installs it
    (``.ci/run``); elsewhere the pass is skipped, as the PostgreSQL tests of the first are."""
    wants = config.getoption("--store") == "postgres"
    if wants and os.environ.get("CI") == "true" and binaries() is None:
        raise pytest.UsageError(f"--store postgres: {NO_POSTGRES}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--store postgres``, skip the tests marked ``sqlite_only``, and those that start
    a PostgreSQL of their own (through ``postgres_bin``): they ran on it in the default pass."""
    if config.getoption("--store") != "postgres":
        return
    if binaries() is None:  # not under CI (``pytest_configure``)
        for item in items:
            item.add_marker(pytest.mark.skip(reason=NO_POSTGRES))
        return
    for item in items:
        mark = item.get_closest_marker("sqlite_only")
        if mark is not None:
            why = " ".join(mark.args) or "needs the SQLite store"
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {why}"))
        elif "postgres_bin" in getattr(item, "fixturenames", ()):
            why = "runs on a PostgreSQL of its own in the default pass"
            item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session", autouse=True)
def cluster_store(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under ``--store postgres``, the session's PostgreSQL server, for ``cluster_metadata``."""
    global _store_server
    if request.config.getoption("--store") != "postgres":
        yield
        return
    _store_server = request.getfixturevalue("postgres")
    yield
    _store_server = None


def cluster_metadata(root: Path) -> str | None:
    """The ``--metadata`` of a cluster kept in *root*: None (SQLite, in its name node's data
    directory), or under ``--store postgres`` a database named for *root*, so that a cluster
    started again on its directory finds its namespace again, as it does in SQLite."""
    if _store_server is None:
        return None
    digest = hashlib.sha256(str(Path(root).absolute()).encode()).hexdigest()[:20]
    return _store_server.database(f"c_{digest}")


def metadata_flag(root: Path) -> list[str]:
    """``--metadata URL`` for ``pydfs cluster up --dir root``, under ``--store postgres``."""
    url = cluster_metadata(root)
    return [] if url is None else ["--metadata", url]


def make_cluster(
    root: Path,
    datanodes: int = 2,
    *,
    capacity: int | None = None,
    datanode_args: list[str] | None = None,
    namenode_args: list[str] | None = None,
    tls: bool = False,
    metadata: str | None = None,
    namenodes: int = 1,
) -> LocalCluster:
    dn_args = ["--heartbeat-interval", HEARTBEAT, *(datanode_args or [])]
    if capacity is not None:
        dn_args += ["--capacity", str(capacity)]
    return LocalCluster(
        root,
        datanodes,
        namenode_args=[
            "--dead-after",
            DEAD_AFTER,
            "--block-size",
            str(BLOCK_SIZE),
            "--replication-interval",
            "0.2",
            *(namenode_args or []),
        ],
        datanode_args=dn_args,
        tls=tls,
        metadata=cluster_metadata(root) if metadata is None else metadata,
        namenodes=namenodes,
    )


def need(what: str) -> None:
    """Skip a test for want of *what*, or fail it under CI, which installs it (``.ci/run``)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is not installed")
    pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="session")
def postgres_bin() -> Path:
    """The directory of PostgreSQL's programs (``pydfs.local_postgres.binaries``)."""
    bin_dir = binaries()
    if bin_dir is None:
        need("PostgreSQL (apt-get install postgresql)")
    assert bin_dir is not None
    return bin_dir


@pytest.fixture(scope="session")
def postgres(postgres_bin: Path) -> Iterator[Postgres]:
    """A PostgreSQL server for the whole run (``pydfs.local_postgres``); skipped where
    PostgreSQL is not installed, but a failure under CI, which installs it (``.ci/run``)."""
    with Postgres(postgres_bin) as pg:
        yield pg


@pytest.fixture
def postgres_url(postgres: Postgres) -> str:
    """A fresh, empty database of the tests' PostgreSQL server."""
    return postgres.database()


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[Callable[..., LocalCluster]]:
    started: list[LocalCluster] = []

    def factory(datanodes: int = 2, **kwargs: object) -> LocalCluster:
        c = make_cluster(tmp_path / f"cluster{len(started)}", datanodes, **kwargs)  # type: ignore[arg-type]
        started.append(c)
        return c.start()

    yield factory
    for c in started:
        c.stop()


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One cluster per test module, for tests that do not disturb its nodes."""
    with make_cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def admin_env(shared_cluster: LocalCluster) -> Iterator[None]:
    """``PYDFS_TOKEN`` set to the shared cluster's admin token, for code that opens pydfs://
    URLs on its own (pandas, fsspec.open) and so finds its token the way users' code does."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYDFS_TOKEN", shared_cluster.admin_token)
        yield


@dataclass
class Result:
    code: int
    out: str
    err: str
    raw: bytes = b""

    def ok(self) -> Result:
        assert self.code == 0, f"exit {self.code}: {self.err}"
        return self


@dataclass
class Cli:
    """Runs ``python -m pydfs`` as a subprocess against one name node, as one user."""

    namenode: str
    home: Path
    token: str
    ca: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYDFS_")}
        env.update(
            PYDFS_NAMENODE=self.namenode,
            PYDFS_CONFIG=str(self.home / "client.toml"),
        )
        if self.token:
            env["PYDFS_TOKEN"] = self.token
        if self.ca:
            env["PYDFS_CA"] = str(self.ca)
        return env

    def __call__(self, *args: str, input: bytes | None = None, cwd: Path | None = None) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "pydfs", *args],
            input=input,
            capture_output=True,
            env=self.env,
            cwd=cwd or self.home,
            timeout=120,
        )
        return Result(
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
            proc.stdout,
        )

    def fails(self, *args: str, input: bytes | None = None) -> str:
        """Run a command that must fail cleanly: non-zero exit, one line on stderr, no traceback."""
        r = self(*args, input=input)
        assert r.code != 0, f"expected failure, got: {r.out}"
        assert "Traceback" not in r.err, r.err
        lines = r.err.strip().splitlines()
        assert len(lines) == 1, r.err
        return lines[0]

    def with_tty(self, *args: str, answer: str) -> Result:
        """Run with a terminal on stdin/stderr, answer the yes/no prompt, return the result."""
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "pydfs", *args],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=slave,
            env=self.env,
            cwd=self.home,
        )
        os.close(slave)
        seen = b""
        deadline = time.monotonic() + 60
        try:
            while b"[y/N]" not in seen:
                assert time.monotonic() < deadline, f"no prompt; saw {seen!r}"
                ready, _, _ = select.select([master], [], [], 1)
                if ready:
                    seen += os.read(master, 4096)
                assert proc.poll() is None or b"[y/N]" in seen, f"exited without asking: {seen!r}"
            os.write(master, answer.encode() + b"\n")
            out, _ = proc.communicate(timeout=60)
            while select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
        finally:
            os.close(master)
            if proc.poll() is None:
                proc.kill()
        return Result(proc.wait(), out.decode(errors="replace"), seen.decode(errors="replace"))


@pytest.fixture
def cli(shared_cluster: LocalCluster, tmp_path: Path) -> Cli:
    return Cli(shared_cluster.url, tmp_path, shared_cluster.admin_token)


def node_id(node: NodeProcess) -> str:
    """The stable id a data node keeps in its data directory."""
    return (node.data_dir / "node_id").read_text().strip()


def block_path(node: NodeProcess, block_id: str) -> Path:
    """The block's file: its bytes from offset 0, then its checksum trailer."""
    return block_file(node.data_dir, block_id)


def block_bytes(node: NodeProcess, block_id: str) -> bytes:
    """The bytes of a block as *node* keeps it, without the trailer (which must validate)."""
    with open(block_path(node, block_id), "rb") as f:
        return os.pread(f.fileno(), BlockChecksums.read(f.fileno()).size, 0)


def block_files(cluster: LocalCluster) -> set[str]:
    """Ids of every block stored on any data node of *cluster*."""
    found = set()
    for node in cluster.datanodes:
        for f in (node.data_dir / "blocks").glob("*/*.blk"):
            found.add(f.stem)
    return found


def wait_healthy(cluster: LocalCluster, fs: object, timeout: float = 30) -> float:
    """Wait until fsck finds every block at its replication factor; returns the seconds taken."""
    import time as _time

    started = _time.monotonic()

    def healthy() -> bool:
        report = fs.fsck()  # type: ignore[attr-defined]
        return bool(report.healthy == report.blocks and not report.corrupt)

    try:
        cluster.wait_until(healthy, timeout, "every block at its replication factor")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}: {fs.fsck()}; {cluster.datanode_states()}") from None  # type: ignore[attr-defined]
    return _time.monotonic() - started
