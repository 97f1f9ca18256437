"""Name node round trips of fsspec's bulk calls on ``pydfs://``, counted from its ``/metrics``.

    python bench/fsspec_trips.py [--files 2000] [--tree 1000] [--dirs 10]

Starts a fresh LocalCluster (2 data nodes), then runs each workload through one
``PydfsFileSystem`` and prints, per workload, the name node requests it caused (by route, from
``pydfs_requests_total``) and its wall time:

* ``pipe``: ``fs.pipe`` of --files small files (100 bytes) into a new directory;
* ``find``, ``du``: of a tree of --tree files in --dirs directories;
* ``cat_ranges``: 200 ranges of one file;
* ``get``: ``fs.get`` of the tree to a local directory;
* ``rm_list``: ``fs.rm`` of the tree's files as a list of paths;
* ``rm_glob``: ``fs.rm(tree + "/*", recursive=True)``;
* ``rm_tree``: ``fs.rm(tree, recursive=True)``.

Output lines are ``name value unit``; the per-route split goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import fsspec.asyn
from prometheus_client.parser import text_string_to_metric_families

from common import note
from pydfs.cluster import LocalCluster
from pydfs.fsspec import PydfsFileSystem


def requests(url: str) -> Counter[str]:
    """Name node requests answered so far, by ``METHOD route`` (``/metrics`` itself left out)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "pydfs_requests_total" and s.labels["route"] != "/metrics":
                counts[f"{s.labels['method']} {s.labels['route']}"] += int(s.value)
    return counts


def measure(url: str, name: str, work: Callable[[], object]) -> None:
    before = requests(url)
    started = time.perf_counter()
    work()
    wall = time.perf_counter() - started
    moved = requests(url) - before
    print(f"{name}_requests {sum(moved.values())} requests", flush=True)
    print(f"{name}_wall {wall * 1000:.0f} ms", flush=True)
    note(f"  {name}: " + ", ".join(f"{k} x{v}" for k, v in sorted(moved.items())))


def tree(files: int, dirs: int, top: str) -> dict[str, bytes]:
    return {f"{top}/d{i % dirs}/f{i}": b"t" * 100 for i in range(files)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--tree", type=int, default=1000)
    parser.add_argument("--dirs", type=int, default=10)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pydfs-trips-", dir=os.environ.get("TMPDIR")))
    try:
        with LocalCluster(root, 2) as cluster:
            fs = PydfsFileSystem(
                namenode=cluster.url, token=cluster.admin_token, skip_instance_cache=True
            )
            url = cluster.url
            small = {f"/pipe/f{i}": b"p" * 100 for i in range(args.files)}
            measure(url, "pipe", lambda: fs.pipe(small))
            fs.pipe(tree(args.tree, args.dirs, "/t1"), batch_size=64)
            fs.pipe("/big", os.urandom(1 << 20))
            measure(url, "find", lambda: fs.find("/t1"))
            measure(url, "du", lambda: fs.du("/t1"))
            starts = [i * 4096 for i in range(200)]
            measure(
                url,
                "cat_ranges",
                lambda: fs.cat_ranges(["/big"] * 200, starts, [s + 100 for s in starts]),
            )
            local = root / "got"
            measure(url, "get", lambda: fs.get("/t1", str(local), recursive=True))
            measure(url, "rm_list", lambda: fs.rm(sorted(tree(args.tree, args.dirs, "/t1"))))
            fs.pipe(tree(args.tree, args.dirs, "/t2"), batch_size=64)
            measure(url, "rm_glob", lambda: fs.rm("/t2/*", recursive=True))
            fs.pipe(tree(args.tree, args.dirs, "/t3"), batch_size=64)
            measure(url, "rm_tree", lambda: fs.rm("/t3", recursive=True))
            fsspec.asyn.sync(fs.loop, fs.aclose)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
