"""How fast a cluster heals: kill one of three data nodes and time the re-replication.

    python bench/heal.py [--size-mib 1024] [--block-mib 64] [--quick]

Starts a fresh LocalCluster (3 data nodes, replication 2), writes --size-mib of random data in
files of four blocks, SIGKILLs the data node holding the most blocks, and measures the time from
the name node declaring it dead to fsck reporting every block at its replication factor. Prints
``name value unit`` lines: the blocks and bytes that had to be copied, and the rates. Copies run
under the default throttles (4 per node at once, 100 MiB/s sent per node).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from common import connect_blocking
from pydfs.cluster import LocalCluster

MiB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--block-mib", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="64 MiB in 4 MiB blocks")
    args = parser.parse_args()
    size, block = args.size_mib * MiB, args.block_mib * MiB
    if args.quick:
        size, block = 64 * MiB, 4 * MiB
    root = Path(tempfile.mkdtemp(prefix="pydfs-heal-", dir=os.environ.get("TMPDIR")))
    cluster = LocalCluster(
        root,
        3,
        namenode_args=["--dead-after", "3", "--replication-interval", "0.5"],
        datanode_args=["--heartbeat-interval", "0.5"],
    )
    try:
        cluster.start()
        with connect_blocking(cluster) as fs:
            per_file = 4 * block
            for i in range(max(1, size // per_file)):
                fs.write_bytes(f"/heal-{i}", os.urandom(per_file), block_size=block)
            counts = {
                n.name: len(list((n.data_dir / "blocks").glob("*/*.blk")))
                for n in cluster.datanodes
            }
            victim = max(cluster.datanodes, key=lambda n: counts[n.name])
            lost = counts[victim.name]
            victim.kill()
            cluster.wait_for_live(2, timeout=60)
            dead_at = time.monotonic()

            def healthy() -> bool:
                report = fs.fsck()
                return bool(report.healthy == report.blocks)

            cluster.wait_until(healthy, 600, "healed")
            seconds = time.monotonic() - dead_at
        print(f"heal_blocks {lost} blocks")
        print(f"heal_bytes {lost * block / 1e6:.1f} MB")
        print(f"heal_seconds {seconds:.2f} s")
        print(f"heal_blocks_per_s {lost / seconds:.2f} blocks/s")
        print(f"heal_mbps {lost * block / seconds / 1e6:.1f} MB/s")
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
