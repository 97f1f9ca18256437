#!/usr/bin/env python3
"""What a new block costs the SQLite store when it already holds many: random ids against ids
that grow with time (``namenode.uploads.new_id``).

    python bench/id_order.py [--blocks 2000000] [--adds 20000] [--rounds 2] [--dir DIR]

Fills a fresh store (the name node's schema, its 64 MiB page cache) with --blocks blocks of two
replicas each under random ids, checkpoints, drops the page cache (as root), then adds --adds
blocks one transaction each (a blocks row and two replicas, as a commit does), first with random
ids, then with ids that grow, for --rounds rounds, and prints the wall and CPU time per block.
A random id lands on a random page of every index of blocks; once those indexes outgrow the
cache, each insert reads and writes pages the next one will not reuse.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydfs.namenode.store.sqlite import Store
from pydfs.namenode.uploads import new_id

FILL_BATCH = 100_000


def fill(store: Store, blocks: int) -> None:
    db = store.db
    with store.transaction():
        for start in range(0, blocks, FILL_BATCH):
            rows = [(secrets.token_hex(16),) for _ in range(min(FILL_BATCH, blocks - start))]
            db.executemany("INSERT INTO blocks VALUES (?, 4096, 1, 1.0)", rows)
            for node in ("dn-1", "dn-2"):
                db.executemany(f"INSERT INTO replicas (block, node) VALUES (?, '{node}')", rows)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def add(store: Store, make: Callable[[], str], count: int) -> tuple[float, float]:
    """Wall and CPU µs per block added, one transaction each."""
    db = store.db
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        block = make()
        with store.transaction():
            db.execute("INSERT INTO blocks VALUES (?, 4096, 1, 1.0)", (block,))
            for node in ("dn-1", "dn-2"):
                db.execute("INSERT INTO replicas (block, node) VALUES (?, ?)", (block, node))
    return (time.perf_counter() - wall) / count * 1e6, (time.process_time() - cpu) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=2_000_000)
    parser.add_argument("--adds", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", default="/var/tmp", help="where the store goes (not tmpfs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="pydfs-idorder-") as tmp:
        store = Store(Path(tmp) / "namespace.sqlite3")
        fill(store, args.blocks)
        size = os.path.getsize(Path(tmp) / "namespace.sqlite3") / 1e6
        dropped = os.geteuid() == 0
        if dropped:
            os.sync()
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
        print(f"store of {args.blocks} blocks: {size:.0f} MB; page cache dropped: {dropped}")
        makers = (("random", lambda: secrets.token_hex(16)), ("grows", new_id))
        for _ in range(args.rounds):
            for name, make in makers:
                wall, cpu = add(store, make, args.adds)
                print(f"{name:7} {wall:7.1f} µs wall {cpu:7.1f} µs cpu per block")
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
