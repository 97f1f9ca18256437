#!/usr/bin/env python3
"""pydfs benchmark: throughput, small files, metadata, many clients, CLI start-up and memory.

    python bench/run.py [--quick] [--runs N] [--json PATH] [--dir DIR] [--only W,...]
                        [--metadata STORE[,STORE...]] [--namenodes N[,N...]]
                        [--peers all|moosefs,moosefs-fsync,seaweedfs]

Starts a LocalCluster (1 name node, 2 data nodes, replication 2) under a temporary directory and
drives it through the SDK (AsyncClient) from this process (W5 adds client processes of its
own). The name nodes keep their metadata on SQLite, or on PostgreSQL (--metadata postgres: a
server the benchmark starts for itself; or a URL), where there may be several (--namenodes).
Given several stores or counts, it measures each setup in turn in every run and reports them
side by side, with ratios (compare.py). In the same run it measures the machine's own limits
(fsync'd local writes, a cold local read, loopback TCP, the interpreter's start-up) so that the
pydfs figures can be read as fractions of what the disk, the network stack and Python allow.
With --peers it also runs W1, W2, W3 and W5 on MooseFS and SeaweedFS, started on loopback by the
benchmark itself (peers.py), and reports pydfs / peer ratios from the same run.

stdout carries only result lines, each ``name value unit``; every figure comes as three lines:
the median over the runs (``name``), then ``name_min`` and ``name_max``. Progress and notes go
to stderr. All figures, per-run values and ratios are also written as JSON (--json).
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import compare
from common import (
    BENCH_DIR,
    MB,
    BenchFailure,
    Endpoint,
    GiB,
    KiB,
    MiB,
    Samples,
    connect,
    endpoint,
    fmt,
    note,
    print_figure,
    run_guarded,
    stop_on_signals,
    summarize,
)
from machine import (
    PeakRss,
    drop_caches,
    fsync_copy,
    generate_file,
    loopback_tcp,
    make_workdir,
    meminfo_total_kib,
    parallel_fsync_copies,
    read_file,
    sha256_file,
)
from metadata import TREES, Setup, parse_setups, server_pids
from peers import PEERS, PeerError, PeerPlan, measure, parse_peers
from pydfs.client.aio import AsyncClient
from pydfs.cluster import LocalCluster
from pydfs.datanode.blockstore import block_file, fs_type
from w5 import w5_parallel_writes
from workloads import (
    cli_startup,
    stream_roundtrip,
    w1_upload,
    w2_download,
    w3_small_files,
    w4_clients,
    w4_metadata,
)

DEFAULT_BLOCK_SIZE = 64 * MiB  # the name node's default, used when the plan leaves it unset
WORKLOADS = ("limits", "w1w2", "stream", "w3", "w4", "w5", "cli")
COMPARED = ("w3", "w4", "w5")  # what several setups run unless --only says otherwise


@dataclass(frozen=True)
class Plan:
    mode: str
    runs: int
    big_size: int  # W1/W2 file and the local-limit file
    small_count: int  # W3
    small_size: int
    tcp_bytes: int
    block_size: int | None  # None: the name node's default (64 MiB)
    meta_mkdirs: int  # W4, from one client and again from 16
    meta_stats: int
    meta_creates: int
    list_entries: int  # W4: entries of the listed directory
    list_reps: int
    w5_procs: int
    w5_files: int  # per process
    w5_size: int
    w5_verify_per_proc: int  # files per process read back and compared
    cli_reps: int  # timed `pydfs ls /` (and `python -c pass`) per run
    stream_size: int
    workloads: tuple[str, ...] = field(default=WORKLOADS)
    peers: tuple[str, ...] = ()  # names in peers.PEERS, measured after pydfs in every run
    client_loop: str = "asyncio"  # the event loop the SDK's clients run on: asyncio or uvloop


def make_plan(
    quick: bool,
    runs: int | None,
    workloads: tuple[str, ...],
    peers: tuple[str, ...] = (),
    w5_procs: int | None = None,
    client_loop: str = "asyncio",
) -> Plan:
    plan = Plan(
        mode="full",
        runs=runs or 3,
        big_size=1 * GiB,
        small_count=1000,
        small_size=4 * KiB,
        tcp_bytes=1 * GiB,
        block_size=None,
        meta_mkdirs=1000,
        meta_stats=1000,
        meta_creates=10_000,
        list_entries=10_000,
        list_reps=5,
        w5_procs=w5_procs or 8,
        w5_files=100,
        w5_size=64 * KiB,
        w5_verify_per_proc=10,
        cli_reps=5,
        stream_size=4 * GiB,
        workloads=workloads,
        peers=peers,
        client_loop=client_loop,
    )
    if not quick:
        return plan
    # Same code paths, small sizes; 8 MiB blocks so the big files still span several blocks.
    return replace(
        plan,
        mode="quick",
        runs=runs or 1,
        big_size=32 * MiB,
        small_count=100,
        tcp_bytes=64 * MiB,
        block_size=8 * MiB,
        meta_mkdirs=100,
        meta_stats=100,
        meta_creates=500,
        list_entries=1000,
        w5_files=10,
        cli_reps=3,
        stream_size=256 * MiB,
    )


class State:
    """What the runs share and what the report needs to say about how they were measured."""

    def __init__(self) -> None:
        self.cache_dropped = True
        self.peak_reset = True
        self.peer_versions: dict[str, str] = {}
        self.peers_skipped: dict[str, str] = {}  # peer → why


@dataclass
class Bench:
    """One benchmark session: the plan, the cluster and the client every run uses."""

    plan: Plan
    work: Path
    setup: Setup
    cluster: LocalCluster
    target: Endpoint
    runner: asyncio.Runner
    fs: AsyncClient
    state: State
    source: Path | None = None
    source_sha: str = ""

    def wants(self, workload: str) -> bool:
        return workload in self.plan.workloads

    @property
    def pids(self) -> dict[str, int]:
        """The processes whose peak RSS is measured: this one, the name nodes, the data nodes."""
        servers = {k: v for k, v in server_pids(self.cluster).items() if k not in TREES}
        return {"client": os.getpid(), **servers, **self.datanode_pids}

    @property
    def datanode_pids(self) -> dict[str, int]:
        return {f"datanode{n + 1}": d.pid for n, d in enumerate(self.cluster.datanodes)}

    @property
    def cpu(self) -> tuple[dict[str, int], frozenset[str]]:
        """The processes whose CPU the metadata phases measure (``workloads.Cpu``)."""
        return {"client": os.getpid(), **server_pids(self.cluster)}, TREES

    @property
    def cpu_servers(self) -> tuple[dict[str, int], frozenset[str]]:
        """Every server's process, data nodes included, for the phases that write files."""
        return {**server_pids(self.cluster), **self.datanode_pids}, TREES


# --- one run -------------------------------------------------------------------------------


def machine_limits(b: Bench, i: int) -> Samples:
    """Cold sequential read (which also leaves the source in the page cache, as it is for W1),
    two fsync'd copies in sequence, the same two copies written at once with an fsync per block
    (as two data nodes do), loopback TCP."""
    assert b.source is not None
    size = b.plan.big_size
    b.state.cache_dropped &= drop_caches()
    t0 = time.perf_counter()
    if read_file(b.source) != size:
        raise BenchFailure("local read: short read of the source file")
    local_read = time.perf_counter() - t0

    copies = [b.work / "copy-1", b.work / "copy-2"]
    t0 = time.perf_counter()
    for copy in copies:
        fsync_copy(b.source, copy)
    both = time.perf_counter() - t0
    for copy in copies:
        copy.unlink()
    t0 = time.perf_counter()
    parallel_fsync_copies(b.source, copies, b.plan.block_size or DEFAULT_BLOCK_SIZE)
    both_parallel = time.perf_counter() - t0
    for copy in copies:
        copy.unlink()
    tcp = loopback_tcp(b.plan.tcp_bytes)
    return {
        "local_read_mbps": [size / MB / local_read],
        "local_write_mbps": [2 * size / MB / both],
        "local_write_2x_mbps": [size / MB / both],
        "local_write_2x_parallel_mbps": [size / MB / both_parallel],
        "loopback_tcp_mbps": [b.plan.tcp_bytes / MB / tcp],
    }


def big_file(b: Bench, i: int) -> Samples:
    """W1 + W2, with the peak RSS of every process over exactly these two."""
    assert b.source is not None
    size = b.plan.big_size
    big = f"/bench/run{i}/big.bin"
    copy_back = b.work / "download.bin"
    with PeakRss(b.pids) as peak:
        w1_s = b.runner.run(w1_upload(b.fs, b.source, big, size, b.plan.block_size))
        b.state.cache_dropped &= drop_caches()
        w2_s = b.runner.run(w2_download(b.fs, big, copy_back))
    b.state.peak_reset &= peak.exact
    got_sha = sha256_file(copy_back)
    copy_back.unlink()
    if got_sha != b.source_sha:
        raise BenchFailure(f"W2: sha256 of {big} is {got_sha}, the source's is {b.source_sha}")
    return {
        "w1_write_mbps": [size / MB / w1_s],
        "w2_read_mbps": [size / MB / w2_s],
        **{f"rss_{name}_mib": [mib] for name, mib in peak.mib.items()},
    }


def streaming(b: Bench, i: int) -> Samples:
    """A generated file written and read back through the SDK's streams, sha256 on the fly;
    the peak RSS of every process over both."""
    size, path = b.plan.stream_size, f"/bench/run{i}/stream.bin"
    with PeakRss(b.pids) as peak:
        write_s, read_s = b.runner.run(
            stream_roundtrip(b.fs, path, size, random.randrange(1 << 32), b.plan.block_size)
        )
    b.state.peak_reset &= peak.exact
    blocks = [block.id for block in b.runner.run(b.fs.info(path)).blocks or []]
    b.runner.run(b.fs.delete(path))  # twice its size on the data nodes' disk
    b.runner.run(settle_deletes(b.cluster, blocks))
    return {
        "stream_write_mbps": [size / MB / write_s],
        "stream_read_mbps": [size / MB / read_s],
        **{f"stream_rss_{name}_mib": [mib] for name, mib in peak.mib.items()},
    }


SETTLE_TIMEOUT = 120.0  # seconds to wait for the data nodes to free a deleted file


async def settle_deletes(cluster: LocalCluster, blocks: list[str]) -> None:
    """Wait until no data node holds a file of *blocks* (a deleted file's: the nodes delete
    them as their next heartbeats' answers order; ``BenchFailure`` if they do not within
    ``SETTLE_TIMEOUT``), then sync: freeing gigabytes keeps the
    disk's journal busy (discards) for seconds, and the small-file phases that follow wait on
    that journal with every fsync.

    The block files themselves are watched, not the bytes the data nodes report used: those
    come with heartbeats, every few seconds, so a figure read before the deletion may not
    count the files written just before it yet (W1's, in quick mode) and is never reached
    again afterwards."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    files = [block_file(node.data_dir, block) for node in cluster.datanodes for block in blocks]
    while left := sum(f.exists() for f in files):
        if loop.time() - start > SETTLE_TIMEOUT:
            raise BenchFailure(
                f"{left} block files of a deleted file still there after {SETTLE_TIMEOUT:g} s"
            )
        await asyncio.sleep(0.2)  # (nothing announces a deletion)
    await asyncio.to_thread(os.sync)
    note(f"the data nodes freed the streamed file in {loop.time() - start:.1f} s")


def small_files(b: Bench, i: int) -> Samples:
    payloads = [os.urandom(b.plan.small_size) for _ in range(b.plan.small_count)]
    servers, trees = b.cpu_servers
    cpu = {"client": os.getpid(), **servers}, trees
    return b.runner.run(w3_small_files(b.fs, f"/bench/run{i}/small", payloads, cpu))


def metadata(b: Bench, i: int) -> Samples:
    async def go() -> Samples:
        many = w4_clients(b.target)
        try:
            return await w4_metadata(
                b.fs,
                many,
                f"/bench/run{i}/meta",
                mkdirs=b.plan.meta_mkdirs,
                stats=b.plan.meta_stats,
                creates=b.plan.meta_creates,
                list_entries=b.plan.list_entries,
                list_reps=b.plan.list_reps,
                cpu=b.cpu,
                seed=i,
            )
        finally:
            await asyncio.gather(*(fs.close() for fs in many))

    return b.runner.run(go())


def many_processes(b: Bench, i: int) -> Samples:
    return b.runner.run(
        w5_parallel_writes(
            b.fs,
            b.target,
            f"/bench/run{i}/w5",
            procs=b.plan.w5_procs,
            files=b.plan.w5_files,
            size=b.plan.w5_size,
            verify_per_proc=b.plan.w5_verify_per_proc,
            seed=random.randrange(1 << 32),
            logdir=b.work / "w5",
            cpu=b.cpu_servers,
            uvloop=b.plan.client_loop == "uvloop",
        )
    )


def cli(b: Bench, i: int) -> Samples:
    return cli_startup(b.target, b.work / "cli", b.plan.cli_reps)


def side_by_side(b: Bench, i: int) -> Samples:
    """The plan's W1/W2, W3 and W5 on each peer still in the race, one after another, each
    started for this run and stopped after it (the pydfs cluster stays up, idle)."""
    plan = b.plan
    peer_plan = PeerPlan(
        big=b.source if b.wants("w1w2") else None,
        big_sha=b.source_sha,
        small_count=plan.small_count if b.wants("w3") else 0,
        small_size=plan.small_size,
        w5_procs=plan.w5_procs if b.wants("w5") else 0,
        w5_files=plan.w5_files,
        w5_size=plan.w5_size,
        w5_verify_per_proc=plan.w5_verify_per_proc,
        scratch=b.work,
    )
    b.work.chmod(0o711)  # MooseFS's daemons run as the user mfs and must reach their directories
    samples: Samples = {}
    for name in plan.peers:
        if name in b.state.peers_skipped:
            continue
        kind = PEERS[name]
        t0 = time.perf_counter()
        try:
            got, dropped, version = measure(kind, b.work / "peers" / name, peer_plan)
        except PeerError as exc:
            b.state.peers_skipped[name] = str(exc)
            note(f"{kind.label}: skipped: {exc}")
            continue
        b.state.cache_dropped &= dropped
        b.state.peer_versions[name] = version
        summary = ", ".join(f"{k} {fmt(statistics.median(v), unit_of(k))}" for k, v in got.items())
        note(f"run {i}/{plan.runs} {name} ({time.perf_counter() - t0:.1f}s): {summary}")
        samples.update(got)
    return samples


# In this order; streaming early, before the client has held W3's and W4's data.
STEPS: list[tuple[str, Callable[[Bench, int], Samples]]] = [
    ("limits", machine_limits),
    ("w1w2", big_file),
    ("stream", streaming),
    ("w3", small_files),
    ("w4", metadata),
    ("w5", many_processes),
    ("cli", cli),
]


def one_run(b: Bench, i: int) -> Samples:
    b.runner.run(b.fs.mkdir(f"/bench/run{i}", parents=True))
    samples: Samples = {}
    for name, step in STEPS:
        if not b.wants(name):
            continue
        t0 = time.perf_counter()
        got = step(b, i)
        summary = ", ".join(f"{k} {fmt(statistics.median(v), unit_of(k))}" for k, v in got.items())
        note(
            f"run {i}/{b.plan.runs} {b.setup.name} {name} ({time.perf_counter() - t0:.1f}s): "
            f"{summary}"
        )
        samples.update(got)
    if b.plan.peers:
        samples.update(side_by_side(b, i))
    return samples


# --- report --------------------------------------------------------------------------------

UNIT_SUFFIXES = {
    "_mbps": "MB/s",
    "_files_per_s": "files/s",
    "_ops_per_s": "ops/s",
    "_mib": "MiB",
    "_ms": "ms",
    "_pct": "%",
}

# ratio name → (numerator, denominator), from the medians of one run, then median/min/max.
RATIOS: dict[str, tuple[str, str]] = {
    "ratio_w1_to_local_write_2x": ("w1_write_mbps", "local_write_2x_mbps"),
    "ratio_w1_to_local_write_2x_parallel": ("w1_write_mbps", "local_write_2x_parallel_mbps"),
    "ratio_w1_to_loopback_tcp": ("w1_write_mbps", "loopback_tcp_mbps"),
    "ratio_w2_to_local_read": ("w2_read_mbps", "local_read_mbps"),
    "ratio_w2_to_loopback_tcp": ("w2_read_mbps", "loopback_tcp_mbps"),
    "ratio_w4_c16_to_one_mkdir": ("w4_c16_mkdir_ops_per_s", "w4_mkdir_ops_per_s"),
    "ratio_w4_c16_to_one_stat": ("w4_c16_stat_ops_per_s", "w4_stat_ops_per_s"),
    "ratio_w4_c16_to_one_create": ("w4_c16_create_ops_per_s", "w4_create_ops_per_s"),
    "ratio_cli_ls_to_python_startup": ("cli_ls_ms", "python_startup_ms"),
}


# The figures measured on the peers too: (figure, row label, short name in its ratios' names);
# the labels are formatted with the plan.
SIDE_BY_SIDE = [
    ("w1_write_mbps", "W1 {big} write (MB/s)", "w1"),
    ("w2_read_mbps", "W2 {big} cold read (MB/s)", "w2"),
    ("w3_write_files_per_s", "W3 {small} write (files/s)", "w3_write"),
    ("w3_read_files_per_s", "W3 {small} read (files/s)", "w3_read"),
    ("w5_files_per_s", "W5 {w5} (files/s)", "w5"),
]


def ratio_name(short: str, peer: str) -> str:
    return f"ratio_{short}_to_{PEERS[peer].prefix.rstrip('_')}"


def peer_ratios(peers: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """``ratio_w1_to_moosefs``: pydfs's figure / the peer's, as in RATIOS."""
    return {
        ratio_name(short, p): (figure, PEERS[p].prefix + figure)
        for p in peers
        for figure, _, short in SIDE_BY_SIDE
    }


def side_by_side_table(plan: Plan, figures: dict[str, Any], ratios: dict[str, Any]) -> str:
    """pydfs and each peer, then pydfs / peer: medians over the runs, as a Markdown table."""
    peers = [p for p in plan.peers if any(PEERS[p].prefix + f in figures for f, *_ in SIDE_BY_SIDE)]
    labels = [PEERS[p].label for p in peers]
    head = ["workload", "pydfs", *labels, *(f"pydfs / {label}" for label in labels)]
    rows = [head, ["---"] + ["---:"] * (len(head) - 1)]

    def cell(fig: dict[str, Any] | None, spec: str) -> str:
        return "-" if fig is None else format(fig["median"], spec)

    def size(n: int) -> str:
        return (
            f"{n / GiB:g} GiB"
            if n >= GiB
            else f"{n / MiB:g} MiB"
            if n >= MiB
            else f"{n // KiB} KiB"
        )

    sizes = {
        "big": size(plan.big_size),
        "small": f"{plan.small_count:,} x {size(plan.small_size)}",
        "w5": f"{plan.w5_procs} x {plan.w5_files} x {size(plan.w5_size)}",
    }
    for figure, label, short in SIDE_BY_SIDE:
        if figure in figures:
            rows.append(
                [label.format(**sizes), cell(figures[figure], ",.0f")]
                + [cell(figures.get(PEERS[p].prefix + figure), ",.0f") for p in peers]
                + [cell(ratios.get(ratio_name(short, p)), ".2f") for p in peers]
            )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def unit_of(name: str) -> str:
    for suffix, unit in UNIT_SUFFIXES.items():
        if name.endswith(suffix):
            return unit
    return "ratio" if name.startswith("ratio_") else "1"


def report(
    plan: Plan,
    runs: list[Samples],
    state: State,
    work: Path,
    elapsed: float,
    setups: list[Setup],
) -> dict[str, Any]:
    """Print the figures (and, for several setups, the side-by-side table on stderr) and
    return everything for the JSON file."""
    names = list(dict.fromkeys(name for run in runs for name in run))
    figures = {}
    for name in names:
        per_run = [run.get(name, []) for run in runs]
        figures[name] = summarize([v for values in per_run for v in values], unit_of(name))
        figures[name]["per_run"] = per_run
    several = len(setups) > 1
    ratios = {}
    compared = compare.ratios(setups, RATIOS) if several else RATIOS | peer_ratios(plan.peers)
    for name, (num, den) in compared.items():
        values = [
            statistics.median(run[num]) / statistics.median(run[den])
            for run in runs
            if run.get(num) and run.get(den)
        ]
        if values:
            ratios[name] = summarize(values, "ratio")
    table = ""
    if several:
        table = compare.table(setups, runs, {k: r["values"] for k, r in ratios.items()})
        print(f"\n{table}\n", file=sys.stderr, flush=True)
    notes = []
    if not state.cache_dropped:
        notes.append(
            "page cache NOT dropped (no permission to write /proc/sys/vm/drop_caches): "
            "W2 and local_read may be served from memory"
        )
    if not state.peak_reset:
        notes.append(
            "VmHWM could not be reset (/proc/PID/clear_refs): peak RSS figures come from "
            "sampling VmRSS every 20 ms and may miss short peaks"
        )
    for name, why in state.peers_skipped.items():
        notes.append(f"{PEERS[name].label} skipped: {why}")
    for line in notes:
        note(f"NOTE: {line}")
    table = side_by_side_table(plan, figures, ratios) if plan.peers else ""
    if table:
        note("side by side (medians over the runs; pydfs through its SDK, peers through FUSE):")
        print(table, file=sys.stderr, flush=True)
    for name, fig in (figures | ratios).items():
        print_figure(name, fig)
    print(f"page_cache_dropped {int(state.cache_dropped)} bool")
    print(f"peak_rss_reset_before_w1 {int(state.peak_reset)} bool")
    sys.stdout.flush()
    return {
        "plan": asdict(plan),
        "setups": [{"name": s.name, "label": s.label, "namenodes": s.namenodes} for s in setups],
        "table": table,
        "figures": figures,
        "ratios": ratios,
        "page_cache_dropped": state.cache_dropped,
        "peak_rss_reset_before_w1": state.peak_reset,
        "client_ru_maxrss_whole_run_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "notes": notes,
        "peers": {
            "asked": list(plan.peers),
            "versions": state.peer_versions,
            "skipped": state.peers_skipped,
        },
        "side_by_side": table,
        "host": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "work_dir_fs": fs_type(work),
            "mem_total_kib": meminfo_total_kib(),
        },
        "total_seconds": elapsed,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --- main ----------------------------------------------------------------------------------


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What makes the clients' event loop: None for asyncio's own."""
    if name == "asyncio":
        return None
    import uvloop

    return cast(Callable[[], asyncio.AbstractEventLoop], uvloop.new_event_loop)


def parse_args(argv: list[str] | None) -> tuple[Plan, list[Setup], argparse.Namespace]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run (for CI)")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3; 1 with --quick)")
    parser.add_argument(
        "--json",
        default=str(BENCH_DIR / "results.json"),
        help="where to write the results (default bench/results.json)",
    )
    parser.add_argument(
        "--dir",
        help="parent for the temporary cluster and files (default: the temp dir, "
        "unless it is tmpfs; then bench/)",
    )
    parser.add_argument(
        "--only",
        help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all; "
        f"{','.join(COMPARED)} with several setups)",
    )
    parser.add_argument(
        "--peers",
        help="also run W1, W2, W3 and W5 on these file systems, started on loopback by the "
        f"benchmark, for pydfs / peer ratios: all, none (default) or some of {', '.join(PEERS)}",
    )
    parser.add_argument(
        "--metadata",
        metavar="STORE[,STORE...]",
        help="where the name nodes keep their metadata: sqlite (the default), postgres (a "
        "PostgreSQL server the benchmark starts for itself, fsync on, and removes), or a "
        "postgresql:// URL of an empty database; several, comma-separated, are compared",
    )
    parser.add_argument(
        "--namenodes",
        metavar="N[,N...]",
        help="name nodes sharing the PostgreSQL database (default 1); several counts, "
        "comma-separated, are compared (SQLite runs with one)",
    )
    parser.add_argument(
        "--client-loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the event loop the benchmark's SDK clients run on (W5's processes too): "
        "asyncio's own (the default) or uvloop's",
    )
    parser.add_argument(
        "--w5-procs",
        type=int,
        metavar="N",
        help="W5's client processes, 1 to 64 (default 8), on pydfs and on the peers",
    )
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.w5_procs is not None and not 1 <= args.w5_procs <= 64:
        parser.error("--w5-procs must be between 1 and 64")
    try:
        setups = parse_setups(args.metadata, args.namenodes)
    except ValueError as exc:
        parser.error(str(exc))
    workloads = WORKLOADS if len(setups) == 1 else COMPARED
    if args.only:
        workloads = tuple(w.strip() for w in args.only.split(",") if w.strip())
        unknown = set(workloads) - set(WORKLOADS)
        if unknown or not workloads:
            parser.error(f"--only takes some of {', '.join(WORKLOADS)}; not {sorted(unknown)}")
    try:
        peers = parse_peers(args.peers)
    except ValueError as exc:
        parser.error(str(exc))
    if peers and not {"w1w2", "w3", "w5"} & set(workloads):
        parser.error("--peers needs one of w1w2, w3, w5 among the workloads")
    if peers and len(setups) > 1:
        parser.error("--peers compares one pydfs setup with the peers: give one --metadata")
    plan = make_plan(args.quick, args.runs, workloads, peers, args.w5_procs, args.client_loop)
    return plan, setups, args


def main(argv: list[str] | None = None) -> int:
    plan, setups, args = parse_args(argv)
    stop_on_signals()

    started = time.perf_counter()
    work = make_workdir(args.dir)
    note(
        f"{plan.mode} mode, {plan.runs} run(s) of {','.join(plan.workloads)}; "
        f"data in {work} ({fs_type(work)}); metadata on {'; '.join(s.label for s in setups)}; "
        f"clients on {plan.client_loop}"
    )
    if plan.peers:
        note(f"side by side with {', '.join(plan.peers)}, each started for every run")
    else:
        why = "quick mode runs them only when asked for" if plan.mode == "quick" else "none asked"
        note(f"peers skipped ({why}): --peers all runs MooseFS and SeaweedFS side by side")
    several = len(setups) > 1
    clusters = [s.cluster(work / (f"cluster-{s.name}" if several else "cluster")) for s in setups]
    state = State()
    per_setup: dict[str, list[Samples]] = {s.name: [] for s in setups}

    def body() -> dict[str, Any]:
        source, source_sha = None, ""
        if {"limits", "w1w2"} & set(plan.workloads):
            source = work / "source.bin"
            t0 = time.perf_counter()
            source_sha = generate_file(source, plan.big_size)
            note(
                f"generated {plan.big_size / MiB:.0f} MiB source in {time.perf_counter() - t0:.1f}s"
            )

        def measure(setup: Setup, cluster: LocalCluster, runs: range) -> None:
            if not cluster.namenode.running:
                cluster.start()
                note(f"{setup.label}: cluster up at {', '.join(cluster.urls)}")
            target = endpoint(cluster)
            fs = connect(target)  # the first name node's client, for all but W4's 16
            try:
                b = Bench(plan, work, setup, cluster, target, runner, fs, state, source, source_sha)
                per_setup[setup.name] += [one_run(b, i) for i in runs]
            finally:
                runner.run(fs.close())

        with asyncio.Runner(loop_factory=loop_factory(plan.client_loop)) as runner:
            if not several:
                measure(setups[0], clusters[0], range(1, plan.runs + 1))
            for i in range(1, plan.runs + 1) if several else ():
                pairs = list(zip(setups, clusters, strict=True))
                for setup, cluster in pairs if i % 2 else reversed(pairs):  # A B C, C B A...
                    measure(setup, cluster, range(i, i + 1))
                    cluster.stop()  # one cluster on the machine at a time
        runs = compare.merge(setups, per_setup) if several else per_setup[setups[0].name]
        return report(plan, runs, state, work, time.perf_counter() - started, setups)

    return run_guarded(work, clusters, body, args.json, started)


if __name__ == "__main__":
    sys.exit(main())
