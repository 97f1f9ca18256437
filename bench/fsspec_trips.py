"""Name node round trips of fsspec's bulk calls on ``pydfs://``, counted from its ``/metrics``.

    python bench/fsspec_trips.py [--files 2000] [--size 1024] [--tree 1000] [--dirs 10]
    python bench/fsspec_trips.py --only pipe,put_r

Starts a fresh LocalCluster (2 data nodes), then runs each workload through one
``PydfsFileSystem`` and prints, per workload, the name node requests it caused (by route, from
``pydfs_requests_total``), its wall time, and the CPU each process used meanwhile (this one,
the name node, each data node; for ``put_r`` the CLI process is a child, counted as "client"):

* ``pipe``: ``fs.pipe`` of --files small files (--size bytes each) into a new directory;
* ``put_r``: ``pydfs put -r`` of a local tree of --tree files of --size bytes in --dirs
  directories (a CLI process; its start-up included);
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
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import fsspec.asyn
from prometheus_client.parser import text_string_to_metric_families

from common import cli_env, note
from machine import cpu_seconds
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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    cluster: LocalCluster, name: str, work: Callable[[], object], files: int | None = None
) -> None:
    """Run *work* and print its name node requests, wall time and CPU per process (and per
    file, given the number of *files*)."""
    url = cluster.url
    pids = {"namenode": cluster.namenode.pid}
    pids |= {f"datanode{n + 1}": d.pid for n, d in enumerate(cluster.datanodes)}
    before = requests(url)
    cpu = {who: cpu_seconds(pid) for who, pid in pids.items()}
    mine = cpu_seconds(os.getpid()) + _children_cpu()
    started = time.perf_counter()
    work()
    wall = time.perf_counter() - started
    used = {"client": cpu_seconds(os.getpid()) + _children_cpu() - mine}
    used |= {who: cpu_seconds(pid) - cpu[who] for who, pid in pids.items()}
    moved = requests(url) - before
    print(f"{name}_requests {sum(moved.values())} requests", flush=True)
    print(f"{name}_wall {wall * 1000:.0f} ms", flush=True)
    for who, seconds in used.items():
        print(f"{name}_{who}_cpu {seconds * 1000:.0f} ms", flush=True)
    note(f"  {name}: " + ", ".join(f"{k} x{v}" for k, v in sorted(moved.items())))
    if files:
        per_file = ", ".join(f"{who} {s * 1e6 / files:.0f}" for who, s in used.items())
        note(f"  {name}: CPU per file (us): {per_file}; wall per file {wall * 1e6 / files:.0f} us")


def put_r(cluster: LocalCluster, root: Path, files: dict[str, bytes]) -> Callable[[], None]:
    """``pydfs put -r`` of *files*, written to a local tree first (not timed)."""
    tree = root / "put-src"
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    env = cli_env(cluster, root / "cli-home")
    pydfs = str(Path(sys.executable).parent / "pydfs")

    def run() -> None:
        subprocess.run(
            [pydfs, "put", "-r", str(tree), "/put"], env=env, check=True, capture_output=True
        )

    return run


def tree(files: int, dirs: int, top: str) -> dict[str, bytes]:
    return {f"{top}/d{i % dirs}/f{i}": b"t" * 100 for i in range(files)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=1024, help="bytes per small file")
    parser.add_argument("--only", help="workloads to run, e.g. pipe,put_r (default: all)")
    parser.add_argument("--tree", type=int, default=1000)
    parser.add_argument("--dirs", type=int, default=10)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pydfs-trips-", dir=os.environ.get("TMPDIR")))
    try:
        with LocalCluster(root, 2) as cluster:
            fs = PydfsFileSystem(
                namenode=cluster.url, token=cluster.admin_token, skip_instance_cache=True
            )
            only = set(args.only.split(",")) if args.only else None

            def wanted(name: str) -> bool:
                return only is None or name in only

            small = {f"/pipe/f{i}": os.urandom(args.size) for i in range(args.files)}
            if wanted("pipe"):
                measure(cluster, "pipe", lambda: fs.pipe(small), args.files)
                if fs.cat(sorted(small)) != {k: small[k] for k in sorted(small)}:
                    raise SystemExit("pipe: what was read back differs from what was written")
            if wanted("put_r"):
                local = {f"d{i % args.dirs}/f{i}": os.urandom(args.size) for i in range(args.tree)}
                measure(cluster, "put_r", put_r(cluster, root, local), args.tree)
                put = {f"/put/{k}": v for k, v in local.items()}
                if fs.cat(list(put)) != put:
                    raise SystemExit("put -r: what was read back differs from what was written")
            if only is not None and not only - {"pipe", "put_r"}:
                fsspec.asyn.sync(fs.loop, fs.aclose)
                return
            fs.pipe(tree(args.tree, args.dirs, "/t1"), batch_size=64)
            fs.pipe("/big", os.urandom(1 << 20))
            measure(cluster, "find", lambda: fs.find("/t1"))
            measure(cluster, "du", lambda: fs.du("/t1"))
            starts = [i * 4096 for i in range(200)]
            measure(
                cluster,
                "cat_ranges",
                lambda: fs.cat_ranges(["/big"] * 200, starts, [s + 100 for s in starts]),
            )
            local = root / "got"
            measure(cluster, "get", lambda: fs.get("/t1", str(local), recursive=True))
            measure(cluster, "rm_list", lambda: fs.rm(sorted(tree(args.tree, args.dirs, "/t1"))))
            fs.pipe(tree(args.tree, args.dirs, "/t2"), batch_size=64)
            measure(cluster, "rm_glob", lambda: fs.rm("/t2/*", recursive=True))
            fs.pipe(tree(args.tree, args.dirs, "/t3"), batch_size=64)
            measure(cluster, "rm_tree", lambda: fs.rm("/t3", recursive=True))
            fsspec.asyn.sync(fs.loop, fs.aclose)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
