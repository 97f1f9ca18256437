"""The name node's CPU time per metadata operation, measured from /proc: a figure the load of a
shared machine disturbs far less than operations per second, for before/after comparisons.

    python bench/namenode_cpu.py [--ops 2000] [--rounds 3]

Starts a LocalCluster (2 data nodes), then for each round and each operation (stat, mkdir,
4 KiB write, list of a 1,000-entry directory) runs *ops* of them one after another through one
AsyncClient and prints the name node's user+system CPU seconds per operation (the median of the
rounds, in µs, with the range), and the client's wall time per operation.
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


Figures = dict[str, list[tuple[float, float]]]  # operation: (cpu s, wall s) per op, per round


async def measure(cluster: LocalCluster, ops: int, rounds: int) -> Figures:
    pid = cluster.namenode.pid
    found: Figures = {name: [] for name in OPS}
    async with connect(cluster) as fs:
        await fs.mkdir("/bench/listed", parents=True)
        for i in range(1000):
            await fs.touch(f"/bench/listed/e{i:04d}")
        for r in range(rounds):
            for name, (op, share) in OPS.items():
                n = max(1, ops // share)
                await op(fs, r, -1)  # warm
                cpu, wall = cpu_seconds(pid), time.perf_counter()
                for i in range(n):
                    await op(fs, r, i)
                wall = time.perf_counter() - wall
                found[name].append(((cpu_seconds(pid) - cpu) / n, wall / n))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="pydfs-nncpu-") as tmp,
        LocalCluster(Path(tmp) / "cluster", 2) as cluster,
    ):
        found = asyncio.run(measure(cluster, args.ops, args.rounds))
    for name, runs in found.items():
        cpu = [c * 1e6 for c, _ in runs]
        wall = [w * 1e6 for _, w in runs]
        print(
            f"{name:10} namenode cpu {statistics.median(cpu):7.0f} µs/op "
            f"({min(cpu):.0f}-{max(cpu):.0f})   client wall {statistics.median(wall):7.0f} µs/op"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
