"""The name node's CPU time per metadata operation, measured from /proc: a figure the load of a
shared machine disturbs far less than operations per second, for before/after comparisons.

    python bench/namenode_cpu.py [--ops 2000] [--rounds 3] [--metadata postgres]

Starts a LocalCluster (2 data nodes), then for each round and each operation (stat, mkdir,
4 KiB write, list of a 1,000-entry directory) runs *ops* of them one after another through one
AsyncClient and prints the name node's user+system CPU seconds per operation (the median of the
rounds, in µs, with the range), and the client's wall time per operation. With ``--metadata
postgres`` the metadata is in a PostgreSQL server of the cluster's own, whose CPU per operation
(every backend's) is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import connect
from machine import cpu_seconds
from metadata import postmaster_pid
from pydfs.client.aio import AsyncClient
from pydfs.cluster import LocalCluster

Op = Callable[[AsyncClient, int, int], Awaitable[object]]


async def _stat(fs: AsyncClient, r: int, i: int) -> object:
    return await fs.info("/bench/listed")


async def _mkdir(fs: AsyncClient, r: int, i: int) -> object:
    return await fs.mkdir(f"/bench/d{r}-{i}")


async def _write(fs: AsyncClient, r: int, i: int) -> object:
    return await fs.write_bytes(f"/bench/f{r}-{i}", DATA)


async def _list(fs: AsyncClient, r: int, i: int) -> object:
    return await fs.ls("/bench/listed")


DATA = os.urandom(4096)
OPS: dict[str, tuple[Op, int]] = {  # the operation, and the share of --ops it runs
    "stat": (_stat, 1),
    "mkdir": (_mkdir, 1),
    "write_4k": (_write, 4),
    "list_1000": (_list, 20),
}


Figures = dict[str, list[tuple[float, float, float]]]  # operation: per round, per op:
# (name node cpu s, wall s, PostgreSQL cpu s)


async def measure(cluster: LocalCluster, ops: int, rounds: int) -> Figures:
    pid = cluster.namenode.pid
    server = postmaster_pid(cluster)

    def server_cpu() -> float:
        return 0.0 if server is None else cpu_seconds(server, tree=True)

    found: Figures = {name: [] for name in OPS}
    async with connect(cluster) as fs:
        await fs.mkdir("/bench/listed", parents=True)
        for i in range(1000):
            await fs.touch(f"/bench/listed/e{i:04d}")
        for r in range(rounds):
            for name, (op, share) in OPS.items():
                n = max(1, ops // share)
                await op(fs, r, -1)  # warm
                cpu, pg, wall = cpu_seconds(pid), server_cpu(), time.perf_counter()
                for i in range(n):
                    await op(fs, r, i)
                wall = time.perf_counter() - wall
                cpu, pg = cpu_seconds(pid) - cpu, server_cpu() - pg
                found[name].append((cpu / n, wall / n, pg / n))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--metadata", choices=("sqlite", "postgres"), default="sqlite", help="default: sqlite"
    )
    args = parser.parse_args()
    metadata = None if args.metadata == "sqlite" else args.metadata
    with (
        tempfile.TemporaryDirectory(prefix="pydfs-nncpu-") as tmp,
        LocalCluster(Path(tmp) / "cluster", 2, metadata=metadata) as cluster,
    ):
        found = asyncio.run(measure(cluster, args.ops, args.rounds))
    for name, runs in found.items():
        cpu = [c * 1e6 for c, _, _ in runs]
        wall = [w * 1e6 for _, w, _ in runs]
        pg = [p * 1e6 for _, _, p in runs]
        server = f"   postgres cpu {statistics.median(pg):5.0f} µs/op" if metadata else ""
        print(
            f"{name:10} namenode cpu {statistics.median(cpu):7.0f} µs/op "
            f"({min(cpu):.0f}-{max(cpu):.0f})   client wall {statistics.median(wall):7.0f} µs/op"
            f"{server}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
