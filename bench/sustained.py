#!/usr/bin/env python3
"""The name node under changes without pause: its CPU per change, window by window.

    python bench/sustained.py [--seconds 90] [--window 10] [--clients 16]

Starts a LocalCluster (SQLite metadata), then --clients tasks of one AsyncClient make
directories without pause for --seconds, and every --window seconds it prints the name node's
CPU per change (from /proc) and the changes per second. A figure that climbs with the count of
changes made is a cost that grows with what the name node keeps (its store, the answers it
keeps for retries): what one short run of ``run.py`` cannot show.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import connect
from machine import cpu_seconds
from pydfs.cluster import LocalCluster


async def measure(cluster: LocalCluster, seconds: float, window: float, clients: int) -> None:
    async with connect(cluster) as fs:
        for c in range(clients):
            await fs.mkdir(f"/sustained/{c}", parents=True)
        end = time.monotonic() + seconds
        made = 0

        async def client(c: int) -> None:
            nonlocal made
            i = 0
            while time.monotonic() < end:
                await fs.mkdir(f"/sustained/{c}/d{i}")
                i += 1
                made += 1

        async def watch() -> None:
            pid = cluster.namenode.pid
            cpu, before, since = cpu_seconds(pid), made, time.monotonic()
            while since < end:
                await asyncio.sleep(max(0.0, min(window, end - since)))
                now, count, at = cpu_seconds(pid), made, time.monotonic()
                per = (now - cpu) / max(1, count - before) * 1e6
                rate = (count - before) / max(at - since, 1e-9)
                print(f"{count:9d} made   name node cpu {per:5.0f} µs/change   {rate:6.0f}/s")
                cpu, before, since = now, count, at

        started = time.monotonic()
        await asyncio.gather(watch(), *(client(c) for c in range(clients)))
        print(f"{made} changes in {time.monotonic() - started:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="pydfs-sustained-") as tmp,
        LocalCluster(Path(tmp) / "cluster", 2) as cluster,
    ):
        asyncio.run(measure(cluster, args.seconds, args.window, args.clients))
    return 0


if __name__ == "__main__":
    sys.exit(main())
