#!/usr/bin/env python3
"""pydfs namespace scale: a name node filled with N empty files.

    python bench/scale.py [--files N] [--per-dir 1000] [--list-entries 10000]
                          [--clients 8] [--tasks 32] [--stat-samples 1000] [--restarts 3]
                          [--json PATH] [--dir DIR] [--metadata sqlite|postgres|URL]

Starts a fresh LocalCluster (1 name node, 2 data nodes; metadata on SQLite, or on PostgreSQL
with --metadata), makes the directories, then fills the namespace with N empty files
(``touch``, through the SDK like any client) from --tasks concurrent tasks over --clients
AsyncClients, and reports:

- the create rate of each tenth of the fill (files/s), as the namespace grows;
- stat latency (median, p99) at the start (once 1 % of the files exist) and at the end;
- the latency of listing a directory of --list-entries entries, at the end;
- the name node's RSS (now and peak) and database size at the end (on PostgreSQL: the
  database's size and the server's memory too);
- the CPU of the name node, the benchmark's clients and PostgreSQL over the fill;
- the name node's restart time: stop, start, until /v1/health answers and a stat works.

Files go into directories of --per-dir files (1,000,000 files: 1,000 directories), except every
(N / list-entries)th file, which goes into one big directory, so that the big directory grows
evenly along the fill. Everything created is checked: every directory is listed at the end and
every entry must be a file that belongs there, with the right count.

stdout: ``name value unit`` lines (repeated measurements as median, ``_min``, ``_max``); progress
on stderr; everything in JSON (--json, default bench/results-scale.json). Not part of the quick
CI run: --files 1000000 takes a long time; use --files 20000 to smoke-test it.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any

from common import (
    BENCH_DIR,
    BenchFailure,
    Endpoint,
    connect,
    endpoint,
    fmt,
    note,
    percentile,
    print_figure,
    run_guarded,
    stop_on_signals,
    summarize,
)
from machine import CpuMeter, dir_size, make_workdir, status_mib
from metadata import (
    TREES,
    database_mib,
    metadata_url,
    parse_setups,
    postgres_pss_mib,
    server_pids,
)
from pydfs.client.aio import AsyncClient
from pydfs.cluster import LocalCluster

ROOT = "/scale"
SLICES = 10


class Layout:
    """Where file *i* of the fill goes."""

    def __init__(self, files: int, per_dir: int, list_entries: int) -> None:
        self.files = files
        self.per_dir = per_dir
        self.big_entries = min(list_entries, files)
        self.stride = max(1, files // max(1, self.big_entries))
        self.dirs = math.ceil(files / per_dir)
        self.width = len(str(max(files - 1, 1)))

    def in_big(self, i: int) -> bool:
        return i % self.stride == 0 and i // self.stride < self.big_entries

    def directory(self, i: int) -> str:
        return f"{ROOT}/big" if self.in_big(i) else f"{ROOT}/d{i // self.per_dir:04d}"

    def path(self, i: int) -> str:
        return f"{self.directory(i)}/f{i:0{self.width}d}"

    def all_dirs(self) -> list[str]:
        return [f"{ROOT}/big", *(f"{ROOT}/d{d:04d}" for d in range(self.dirs))]


class Progress:
    """Counts finished creates and records, on a clock that stops while the fill is paused, when
    each tenth of the total is reached."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.boundaries = [total * k // SLICES for k in range(1, SLICES + 1)]
        self.at: list[float] = []  # active seconds at each boundary
        self._before = 0.0
        self._t0 = 0.0

    def resume(self) -> None:
        self._t0 = time.perf_counter()

    def pause(self) -> None:
        self._before += time.perf_counter() - self._t0

    def one_done(self) -> None:
        self.done += 1
        while len(self.at) < SLICES and self.done >= self.boundaries[len(self.at)]:
            self.at.append(self._before + time.perf_counter() - self._t0)
            k = len(self.at)
            start = self.boundaries[k - 2] if k > 1 else 0
            span = self.at[-1] - (self.at[-2] if k > 1 else 0.0)
            rate = (self.boundaries[k - 1] - start) / span if span > 0 else float("inf")
            note(f"slice {k}/{SLICES}: {self.done:,} files, {rate:,.0f} files/s")

    def rates(self) -> list[float]:
        out, prev_n, prev_t = [], 0, 0.0
        for n, t in zip(self.boundaries, self.at, strict=True):
            out.append((n - prev_n) / (t - prev_t) if t > prev_t else float("inf"))
            prev_n, prev_t = n, t
        return out


async def all_of(workers: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the workers at once; the first to fail cancels the others and its error is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            for worker in workers:
                group.create_task(worker)
    except ExceptionGroup as group_error:
        raise group_error.exceptions[0] from None


async def fill(
    clients: list[AsyncClient], layout: Layout, lo: int, hi: int, tasks: int, progress: Progress
) -> None:
    """Create files lo..hi-1 from *tasks* tasks, each pulling the next index as it is free."""
    todo = iter(range(lo, hi))

    async def worker(fs: AsyncClient) -> None:
        for i in todo:
            status = await fs.touch(layout.path(i))
            if status.type != "file" or status.size != 0:
                raise BenchFailure(f"create {layout.path(i)} answered a {status.type}")
            progress.one_done()

    progress.resume()
    await all_of(worker(clients[t % len(clients)]) for t in range(tasks))
    progress.pause()


async def make_dirs(clients: list[AsyncClient], dirs: list[str], tasks: int) -> float:
    await clients[0].mkdir(ROOT)
    todo = iter(dirs)

    async def worker(fs: AsyncClient) -> None:
        for path in todo:
            await fs.mkdir(path)

    t0 = time.perf_counter()
    await all_of(worker(clients[t % len(clients)]) for t in range(tasks))
    return time.perf_counter() - t0


async def stat_latencies(
    fs: AsyncClient, layout: Layout, existing: int, samples: int, rng: random.Random
) -> list[float]:
    """Milliseconds of *samples* stats, one after another, of random files among the first
    *existing*."""
    latencies = []
    for _ in range(samples):
        path = layout.path(rng.randrange(existing))
        t0 = time.perf_counter()
        status = await fs.info(path)
        latencies.append((time.perf_counter() - t0) * 1000)
        if status.type != "file" or status.path != path:
            raise BenchFailure(f"stat {path} answered {status.type} {status.path}")
    return latencies


async def verify(fs: AsyncClient, layout: Layout) -> None:
    """Every directory holds exactly the files the layout puts there, and nothing else."""
    expected = Counter(layout.directory(i) for i in range(layout.files))
    for directory in layout.all_dirs():
        entries = await fs.ls(directory)
        for e in entries:
            if e.type != "file" or not e.name.startswith("f"):
                raise BenchFailure(f"{directory}/{e.name} is an unexpected {e.type}")
            i = int(e.name[1:])
            if not 0 <= i < layout.files or layout.directory(i) != directory:
                raise BenchFailure(f"{directory}/{e.name} is not where the fill put it")
        if len(entries) != expected[directory]:
            raise BenchFailure(
                f"{directory} holds {len(entries)} entries, not {expected[directory]}"
            )


async def first_stat_ms(target: Endpoint, path: str) -> float:
    """Milliseconds for a stat from a new client (so a new connection)."""
    t0 = time.perf_counter()
    async with connect(target) as fs:
        status = await fs.info(path)
    if status.path != path:
        raise BenchFailure(f"stat {path} after restart answered {status.path}")
    return (time.perf_counter() - t0) * 1000


def restart(cluster: LocalCluster, target: Endpoint, probe: str) -> dict[str, float]:
    """Stop the name node (SIGTERM, wait), start it on the same port, wait until /v1/health
    answers (polled every 20 ms) and a stat from a new client works."""
    t0 = time.perf_counter()
    cluster.namenode.stop()
    stopped = time.perf_counter()
    cluster.restart_namenode()  # starts it and waits for /v1/health
    healthy = time.perf_counter()
    stat_ms = asyncio.run(first_stat_ms(target, probe))
    done = time.perf_counter()
    return {
        "restart_s": done - t0,
        "stop_s": stopped - t0,
        "start_to_health_s": healthy - stopped,
        "first_stat_ms": stat_ms,
    }


def run(args: argparse.Namespace, cluster: LocalCluster, work: Path) -> dict[str, Any]:
    layout = Layout(args.files, args.per_dir, args.list_entries)
    rng = random.Random(args.seed)
    results: dict[str, Any] = {}
    nn = cluster.namenode
    results["namenode_rss_start_mib"] = status_mib(nn.pid, "VmRSS")
    target = endpoint(cluster)
    first = max(1, args.files // 100)

    async def fill_and_measure() -> None:
        clients = [connect(target) for _ in range(args.clients)]
        try:
            dirs = layout.all_dirs()
            seconds = await make_dirs(clients, dirs, args.tasks)
            results["mkdir_dirs_per_s"] = len(dirs) / seconds
            note(f"{len(dirs):,} directories in {seconds:.1f}s; filling {args.files:,} files")
            progress = Progress(args.files)
            await fill(clients, layout, 0, first, args.tasks, progress)
            start_ms = await stat_latencies(clients[0], layout, first, args.stat_samples, rng)
            results["stat_start_files"] = first
            results["stat_start_ms"] = start_ms
            with CpuMeter({"client": os.getpid(), **server_pids(cluster)}, TREES) as cpu:
                await fill(clients, layout, first, args.files, args.tasks, progress)
            results["fill_cpu_pct"] = cpu.pct
            results["create_slices_files_per_s"] = progress.rates()
            results["create_files_per_s"] = args.files / progress.at[-1]
            results["fill_seconds"] = progress.at[-1]
            results["stat_end_ms"] = await stat_latencies(
                clients[0], layout, args.files, args.stat_samples, rng
            )
            big = f"{ROOT}/big"
            entries = await clients[0].ls(big)  # warm-up, and the count is checked
            if len(entries) != layout.big_entries:
                raise BenchFailure(f"{big} lists {len(entries)}, not {layout.big_entries}")
            ls_ms = []
            for _ in range(args.ls_reps):
                t0 = time.perf_counter()
                entries = await clients[0].ls(big)
                ls_ms.append((time.perf_counter() - t0) * 1000)
            results["ls_entries"] = len(entries)
            results["ls_ms"] = ls_ms
            t0 = time.perf_counter()
            await verify(clients[0], layout)
            note(f"every directory checked in {time.perf_counter() - t0:.1f}s")
        finally:
            await asyncio.gather(*(fs.close() for fs in clients))

    asyncio.run(fill_and_measure())
    results["namenode_rss_end_mib"] = status_mib(nn.pid, "VmRSS")
    results["namenode_peak_rss_mib"] = status_mib(nn.pid, "VmHWM")
    results["namenode_dir_mib"] = dir_size(nn.data_dir) / 2**20
    url = metadata_url(cluster)
    if url is not None:
        results["postgres_database_mib"] = database_mib(url)
    if cluster.postgres is not None:
        results["postgres_dir_mib"] = dir_size(cluster.postgres.data) / 2**20
        results["postgres_pss_mib"] = postgres_pss_mib(cluster)
    restarts = []
    for k in range(args.restarts):
        restarts.append(restart(cluster, target, layout.path(rng.randrange(args.files))))
        note(f"restart {k + 1}/{args.restarts}: {restarts[-1]['restart_s']:.2f}s")
    results["restarts"] = restarts
    return results


def report(args: argparse.Namespace, r: dict[str, Any]) -> dict[str, Any]:
    def line(name: str, value: float, unit: str) -> None:
        print(f"scale_{name} {fmt(value, unit)} {unit}")

    print(f"scale_files {args.files} files")
    line("mkdir_dirs_per_s", r["mkdir_dirs_per_s"], "dirs/s")
    for k, rate in enumerate(r["create_slices_files_per_s"], 1):
        line(f"create_slice{k:02d}_files_per_s", rate, "files/s")
    line("create_files_per_s", r["create_files_per_s"], "files/s")
    line("fill_s", r["fill_seconds"], "s")
    for when in ("start", "end"):
        line(f"stat_{when}_ms_median", statistics.median(r[f"stat_{when}_ms"]), "ms")
        line(f"stat_{when}_ms_p99", percentile(r[f"stat_{when}_ms"], 99), "ms")
    print(f"scale_ls_entries {r['ls_entries']} entries")
    figures = {"scale_ls_ms": summarize(r["ls_ms"], "ms")}
    for key in ("restart_s", "stop_s", "start_to_health_s", "first_stat_ms"):
        unit = "ms" if key.endswith("_ms") else "s"
        figures[f"scale_{key}"] = summarize([x[key] for x in r["restarts"]], unit)
    for name, fig in figures.items():
        print_figure(name, fig)
    line("namenode_rss_start_mib", r["namenode_rss_start_mib"], "MiB")
    line("namenode_rss_end_mib", r["namenode_rss_end_mib"], "MiB")
    line("namenode_peak_rss_mib", r["namenode_peak_rss_mib"], "MiB")
    line("namenode_dir_mib", r["namenode_dir_mib"], "MiB")
    for key in ("postgres_database_mib", "postgres_dir_mib", "postgres_pss_mib"):
        if r.get(key) is not None:
            line(key, r[key], "MiB")
    for who, pct in r["fill_cpu_pct"].items():
        line(f"fill_{who}_cpu_pct", pct, "%")
    sys.stdout.flush()
    return {"args": vars(args), "results": r, "figures": figures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1_000_000, help="files to create (1000000)")
    parser.add_argument("--per-dir", type=int, default=1000, help="files per directory (1000)")
    parser.add_argument("--list-entries", type=int, default=10_000, help="big directory (10000)")
    parser.add_argument("--clients", type=int, default=8, help="AsyncClients filling (8)")
    parser.add_argument("--tasks", type=int, default=32, help="concurrent creates (32)")
    parser.add_argument("--stat-samples", type=int, default=1000, help="stats per measure (1000)")
    parser.add_argument("--ls-reps", type=int, default=5, help="timed listings (5)")
    parser.add_argument("--restarts", type=int, default=3, help="name node restarts (3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default=str(BENCH_DIR / "results-scale.json"))
    parser.add_argument("--dir", help="parent for the temporary cluster (as run.py)")
    parser.add_argument(
        "--metadata",
        default="sqlite",
        help="sqlite (default), postgres (a PostgreSQL server of the benchmark's own, fsync on, "
        "removed at the end) or a postgresql:// URL of an empty database",
    )
    args = parser.parse_args(argv)
    try:
        (setup,) = parse_setups(args.metadata, "1")
    except ValueError as exc:
        parser.error(str(exc) if "," not in args.metadata else "--metadata takes one store")
    if args.files < 1 or args.per_dir < 1 or args.tasks < 1 or args.clients < 1:
        parser.error("--files, --per-dir, --tasks and --clients must be at least 1")
    if args.restarts < 1 or args.ls_reps < 1 or args.stat_samples < 1:
        parser.error("--restarts, --ls-reps and --stat-samples must be at least 1")
    stop_on_signals()

    started = time.perf_counter()
    work = make_workdir(args.dir, prefix="pydfs-scale-")
    note(f"{args.files:,} files; metadata on {setup.label}; data in {work}")
    cluster = setup.cluster(work / "cluster")

    def body() -> dict[str, Any]:
        cluster.start()
        note(f"cluster up at {cluster.url}")
        results = run(args, cluster, work)
        data = report(args, results)
        data["total_seconds"] = time.perf_counter() - started
        data["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        return data

    return run_guarded(work, [cluster], body, args.json, started)


if __name__ == "__main__":
    sys.exit(main())
