"""Where the benchmarked name nodes keep their metadata, and what that store costs.

A ``Setup`` is SQLite (the default: one name node, the database in its data directory) or
PostgreSQL with one or more name nodes sharing one database. PostgreSQL is either a server
given by URL (an empty database) or ``postgres``: one the cluster starts for itself under its
own directory (``LocalCluster(metadata="postgres")``: fsync on, on this machine, listening on a
Unix socket), so that an acknowledged write is as durable as on SQLite, and which goes with the
cluster. The PostgreSQL server's CPU and memory are those of its postmaster and every process
below it (one backend per connection of the name nodes' pools).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from common import DATANODES, BenchFailure
from machine import tree_pss_mib
from pydfs.cluster import LocalCluster

OWN_POSTGRES = "postgres"


@dataclass(frozen=True)
class Setup:
    """One way to keep the metadata: *metadata* None is SQLite, else ``postgres`` or a URL."""

    metadata: str | None = None
    namenodes: int = 1

    @property
    def name(self) -> str:
        """Short, for figure names: ``sqlite``, ``pg1``, ``pg2``..."""
        return "sqlite" if self.metadata is None else f"pg{self.namenodes}"

    @property
    def label(self) -> str:
        """For tables: ``SQLite``, ``PostgreSQL, 2 name nodes``."""
        if self.metadata is None:
            return "SQLite"
        return f"PostgreSQL, {self.namenodes} name node{'s' if self.namenodes > 1 else ''}"

    def cluster(self, root: Path) -> LocalCluster:
        return LocalCluster(
            root, datanodes=DATANODES, metadata=self.metadata, namenodes=self.namenodes
        )


def parse_setups(metadata: str | None, namenodes: str | None) -> list[Setup]:
    """The setups of ``--metadata A[,B...] --namenodes N[,M...]``: every metadata store with
    every count of name nodes, except SQLite with more than one (it cannot be shared), which
    runs once with one. ``sqlite`` names the default. Raises ValueError with a message."""
    stores = [m.strip() for m in (metadata or "sqlite").split(",") if m.strip()]
    try:
        counts = [int(n) for n in (namenodes or "1").split(",") if n.strip()]
    except ValueError:
        raise ValueError(f"--namenodes takes numbers, e.g. 1,2; not {namenodes!r}") from None
    if not stores or not counts or min(counts) < 1:
        raise ValueError("--metadata and --namenodes need at least one value; name nodes >= 1")
    for store in stores:
        if store not in ("sqlite", OWN_POSTGRES) and not store.startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError(
                f"--metadata takes sqlite, postgres (a server of the benchmark's own) or a "
                f"postgresql:// URL; not {store!r}"
            )
    setups: list[Setup] = []
    for store in stores:
        for count in counts:
            setup = Setup(None if store == "sqlite" else store, 1 if store == "sqlite" else count)
            if setup not in setups:
                setups.append(setup)
    if setups == [Setup(None, 1)] and max(counts) > 1:
        raise ValueError("several name nodes need PostgreSQL: add --metadata postgres")
    if len([s for s in setups if s.metadata not in (None, OWN_POSTGRES)]) > 1:
        raise ValueError(
            "a postgresql:// URL serves one setup (its database must be empty): give one "
            "--namenodes, or use --metadata postgres (a new server for each setup)"
        )
    return setups


def postmaster_pid(cluster: LocalCluster) -> int | None:
    """The PID of the cluster's own PostgreSQL server, if it has one running."""
    if cluster.postgres is None:
        return None
    try:
        return int((cluster.postgres.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def metadata_url(cluster: LocalCluster) -> str | None:
    """The PostgreSQL URL the cluster's name nodes use, None on SQLite."""
    if cluster.postgres is not None:
        return cluster.postgres.database("pydfs")
    if cluster.metadata and cluster.metadata.startswith(("postgresql://", "postgres://")):
        return cluster.metadata
    return None


def database_mib(url: str) -> float:
    """``pg_database_size`` of the database at *url*, in MiB."""

    async def query() -> float:
        conn = await asyncpg.connect(url)
        try:
            size = await conn.fetchval("SELECT pg_database_size(current_database())")
        finally:
            await conn.close()
        return float(size) / 2**20

    try:
        return asyncio.run(query())
    except (OSError, asyncpg.PostgresError) as exc:
        raise BenchFailure(f"cannot read the database's size: {exc}") from None


def postgres_pss_mib(cluster: LocalCluster) -> float | None:
    """Proportional memory (PSS, so shared buffers count once) of the cluster's PostgreSQL."""
    pid = postmaster_pid(cluster)
    return None if pid is None else tree_pss_mib(pid)


TREES = frozenset({OWN_POSTGRES})  # the names whose CPU is that of a process tree


def server_pids(cluster: LocalCluster) -> dict[str, int]:
    """The cluster's metadata servers: ``namenode``, ``namenode2``..., and ``postgres`` (its
    postmaster; see ``TREES``) when the cluster runs its own."""
    pids = {
        "namenode" if k == 0 else f"namenode{k + 1}": node.pid
        for k, node in enumerate(cluster.namenodes)
    }
    postmaster = postmaster_pid(cluster)
    if postmaster is not None:
        pids[OWN_POSTGRES] = postmaster
    return pids
