#!/usr/bin/env python3
"""What a new block costs the SQLite store when it already holds many: random ids against ids
that grow with time (``pydfs.ids.new_id``, as the name node makes them).

    python bench/id_order.py [--blocks 2000000] [--adds 20000] [--rounds 2] [--dir DIR]

Fills a store (the name node's schema and page cache size) with --blocks blocks of two replicas
each under random ids, then, for each of --rounds rounds and each id order (which goes first
alternates), reopens the store (an empty cache of its own), drops the system's page cache (as
root; said in the output), and adds --adds blocks one transaction each (a blocks row and two
replicas: what a block adds to the indexes keyed by block id, less the file's own row), and
prints the wall and CPU time per block. No fsync: the name node's write-ahead log fsync comes on
top, the same for both. A random id lands on a random page of each index of blocks; once those
indexes outgrow the cache, each insert reads and writes pages the next one will not reuse.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from machine import drop_caches
from pydfs.ids import new_id
from pydfs.namenode.store.sqlite import Store

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
        path = Path(tmp) / "namespace.sqlite3"
        store = Store(path)
        fill(store, args.blocks)
        store.close()
        print(f"a store of {args.blocks} blocks: {path.stat().st_size / 1e6:.0f} MB")
        makers = [("random", lambda: secrets.token_hex(16)), ("grows", lambda: new_id(spread=True))]
        for round in range(args.rounds):
            for name, make in makers if round % 2 == 0 else makers[::-1]:
                store = Store(path)
                cold = drop_caches()
                wall, cpu = add(store, make, args.adds)
                store.close()
                cache = "page cache dropped" if cold else "page cache as it was (not root)"
                print(f"{name:7} {wall:7.1f} µs wall {cpu:7.1f} µs cpu per block ({cache})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
