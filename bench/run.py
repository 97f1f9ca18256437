#!/usr/bin/env python3
"""pydfs benchmark: throughput, small-file rate and memory of a fresh local cluster.

    python bench/run.py [--quick] [--runs N] [--json PATH] [--dir DIR]

Starts a LocalCluster (1 name node, 2 data nodes, replication 2) under a temporary directory and
drives it through the SDK (AsyncClient) from this process. In the same run it measures the
machine's own limits (fsync'd local writes, a cold local read, loopback TCP) so that the pydfs
figures can be read as fractions of what the disk and the network stack allow.

stdout carries only result lines, each ``name value unit``; every figure comes as three lines:
the median over the runs (``name``), then ``name_min`` and ``name_max``. Progress and notes go
to stderr. All figures, per-run values and ratios are also written as JSON (--json).
See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydfs.client.aio import AsyncClient
from pydfs.cluster import LocalCluster

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
MB = 1_000_000  # throughput figures are in MB/s, MB = 10^6 bytes
IO_CHUNK = 1 * MiB
REPLICATION = 2
DEFAULT_BLOCK_SIZE = 64 * MiB  # the name node's default, used when the plan leaves it unset
DATANODES = 2
BENCH_DIR = Path(__file__).resolve().parent


class BenchFailure(Exception):
    """pydfs returned wrong data or misbehaved: the benchmark fails with a non-zero exit."""


@dataclass(frozen=True)
class Plan:
    mode: str
    runs: int
    big_size: int  # W1/W2 file and the local-limit file
    small_count: int  # W3
    small_size: int
    tcp_bytes: int
    block_size: int | None  # None: the name node's default (64 MiB)


def make_plan(quick: bool, runs: int | None) -> Plan:
    if quick:
        # Same code paths, small sizes; 8 MiB blocks so the file still spans several blocks.
        return Plan("quick", runs or 1, 32 * MiB, 100, 4 * KiB, 64 * MiB, 8 * MiB)
    return Plan("full", runs or 3, 1 * GiB, 1000, 4 * KiB, 1 * GiB, None)


def note(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --- the host ------------------------------------------------------------------------------


def fs_type(path: Path) -> str:
    """File-system type of the mount holding *path* (from /proc/mounts)."""
    real = str(path.resolve())
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) > len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


def make_workdir(requested: str | None) -> Path:
    """A fresh directory on a real disk: --dir, else the temp dir unless it is in memory."""
    if requested:
        parent = Path(requested).expanduser()
        parent.mkdir(parents=True, exist_ok=True)
    else:
        parent = Path(tempfile.gettempdir())
        if fs_type(parent) in ("tmpfs", "ramfs"):
            parent = BENCH_DIR  # keep the data on the disk that holds the repository
    return Path(tempfile.mkdtemp(prefix="pydfs-bench-", dir=parent))


def drop_caches() -> bool:
    """``sync; echo 3 > /proc/sys/vm/drop_caches``; False when not permitted."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        return False
    return True


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM of *pid* to its current RSS (``echo 5 > /proc/PID/clear_refs``)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5\n")
    except OSError:
        return False
    return True


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise BenchFailure(f"no VmHWM in /proc/{pid}/status")


def generate_file(path: Path, size: int) -> str:
    """Write *size* random bytes to *path*; returns their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            data = os.urandom(min(IO_CHUNK, left))
            digest.update(data)
            f.write(data)
            left -= len(data)
        f.flush()
        os.fsync(f.fileno())
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    buf = bytearray(IO_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def read_file(path: Path) -> int:
    """Sequential read of *path* in 1 MiB reads; returns the bytes read."""
    buf = bytearray(IO_CHUNK)
    total = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            total += n
    return total


def fsync_copy(src: Path, dst: Path, fsync_every: int | None = None) -> None:
    """Copy *src* to *dst* and fsync it: at the end, and every *fsync_every* bytes if given."""
    buf = bytearray(IO_CHUNK)
    view = memoryview(buf)
    pending = 0
    with open(src, "rb", buffering=0) as fin, open(dst, "wb", buffering=0) as fout:
        while n := fin.readinto(buf):
            fout.write(view[:n])
            pending += n
            if fsync_every and pending >= fsync_every:
                os.fsync(fout.fileno())
                pending = 0
        os.fsync(fout.fileno())


def parallel_fsync_copies(src: Path, dsts: list[Path], fsync_every: int) -> None:
    """One thread per copy, all at once, as the data nodes of a pipeline write a block."""
    errors: list[BaseException] = []

    def copy(dst: Path) -> None:
        try:
            fsync_copy(src, dst, fsync_every)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=copy, args=(d,), daemon=True) for d in dsts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def loopback_tcp(total: int) -> float:
    """Seconds to push *total* bytes through a 127.0.0.1 TCP connection in 1 MiB sends."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        received = [0]
        errors: list[BaseException] = []

        def receive() -> None:
            try:
                conn, _ = server.accept()
                with conn:
                    buf = bytearray(IO_CHUNK)
                    while received[0] < total:
                        n = conn.recv_into(buf)
                        if not n:
                            break
                        received[0] += n
            except BaseException as exc:
                errors.append(exc)

        receiver = threading.Thread(target=receive, name="tcp-receiver", daemon=True)
        receiver.start()
        payload = os.urandom(IO_CHUNK)
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as conn:
            sent = 0
            while sent < total:
                chunk = payload[: min(IO_CHUNK, total - sent)]
                conn.sendall(chunk)
                sent += len(chunk)
            receiver.join()
        elapsed = time.perf_counter() - t0
    if errors or received[0] != total:
        raise BenchFailure(f"loopback test received {received[0]} of {total} bytes: {errors}")
    return elapsed


# --- pydfs workloads -----------------------------------------------------------------------


async def w1_upload(fs: AsyncClient, local: Path, path: str, plan: Plan) -> float:
    t0 = time.perf_counter()
    status = await fs.upload(local, path, block_size=plan.block_size)
    elapsed = time.perf_counter() - t0
    if status.size != plan.big_size:
        raise BenchFailure(f"W1: {path} committed with {status.size} bytes, not {plan.big_size}")
    info = await fs.info(path)
    blocks = info.blocks or []
    short = [b.id for b in blocks if len(b.nodes) < REPLICATION]
    if not blocks or short:
        raise BenchFailure(f"W1: blocks of {path} with fewer than {REPLICATION} replicas: {short}")
    return elapsed


async def w2_download(fs: AsyncClient, path: str, local: Path) -> float:
    t0 = time.perf_counter()
    size = await fs.download(path, local, overwrite=True)
    elapsed = time.perf_counter() - t0
    if size != local.stat().st_size:
        raise BenchFailure(f"W2: download reported {size} bytes, file has {local.stat().st_size}")
    return elapsed


async def w3_small_files(
    fs: AsyncClient, directory: str, payloads: list[bytes]
) -> tuple[float, float]:
    await fs.mkdir(directory, parents=True)
    paths = [f"{directory}/f{i:05d}" for i in range(len(payloads))]
    t0 = time.perf_counter()
    for path, data in zip(paths, payloads, strict=True):
        await fs.write_bytes(path, data)
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = [await fs.read_bytes(path) for path in paths]
    read_s = time.perf_counter() - t0
    bad = [p for p, want, have in zip(paths, payloads, got, strict=True) if want != have]
    if bad:
        raise BenchFailure(f"W3: {len(bad)} files read back wrong, e.g. {bad[:3]}")
    return write_s, read_s


# --- one run -------------------------------------------------------------------------------


@dataclass
class RunResult:
    local_read_mbps: float
    local_write_mbps: float
    local_write_2x_mbps: float
    local_write_2x_parallel_mbps: float
    loopback_tcp_mbps: float
    w1_write_mbps: float
    w2_read_mbps: float
    w3_write_files_per_s: float
    w3_read_files_per_s: float
    rss_client_mib: float
    rss_namenode_mib: float
    rss_datanode1_mib: float
    rss_datanode2_mib: float


class State:
    """What the runs share and what the report needs to say about how they were measured."""

    def __init__(self) -> None:
        self.cache_dropped = True
        self.peak_reset = True


def one_run(
    i: int,
    plan: Plan,
    work: Path,
    source: Path,
    source_sha: str,
    cluster: LocalCluster,
    runner: asyncio.Runner,
    fs: AsyncClient,
    state: State,
) -> RunResult:
    size = plan.big_size

    def mbps(seconds: float, nbytes: int = size) -> float:
        return nbytes / MB / seconds

    # Machine limits: cold sequential read (which also leaves the source in the page cache,
    # as it is for W1), two fsync'd copies in sequence, the same two copies written at once
    # with an fsync per block (as two data nodes do), loopback TCP.
    state.cache_dropped &= drop_caches()
    t0 = time.perf_counter()
    if read_file(source) != size:
        raise BenchFailure("local read: short read of the source file")
    local_read = mbps(time.perf_counter() - t0)

    copies = [work / "copy-1", work / "copy-2"]
    t0 = time.perf_counter()
    for copy in copies:
        fsync_copy(source, copy)
    both = time.perf_counter() - t0
    for copy in copies:
        copy.unlink()
    t0 = time.perf_counter()
    parallel_fsync_copies(source, copies, plan.block_size or DEFAULT_BLOCK_SIZE)
    both_parallel = time.perf_counter() - t0
    for copy in copies:
        copy.unlink()

    tcp = mbps(loopback_tcp(plan.tcp_bytes), plan.tcp_bytes)

    # W1 + W2, with the peak RSS of every process measured over exactly these two.
    pids = {
        "client": os.getpid(),
        "namenode": cluster.namenode.pid,
        **{f"datanode{n + 1}": d.pid for n, d in enumerate(cluster.datanodes)},
    }
    for pid in pids.values():
        state.peak_reset &= reset_peak_rss(pid)
    runner.run(fs.mkdir(f"/bench/run{i}", parents=True))
    big = f"/bench/run{i}/big.bin"
    w1_s = runner.run(w1_upload(fs, source, big, plan))

    state.cache_dropped &= drop_caches()
    copy_back = work / "download.bin"
    w2_s = runner.run(w2_download(fs, big, copy_back))
    rss = {name: peak_rss_mib(pid) for name, pid in pids.items()}
    got_sha = sha256_file(copy_back)
    copy_back.unlink()
    if got_sha != source_sha:
        raise BenchFailure(f"W2: sha256 of {big} is {got_sha}, the source's is {source_sha}")

    payloads = [os.urandom(plan.small_size) for _ in range(plan.small_count)]
    write_s, read_s = runner.run(w3_small_files(fs, f"/bench/run{i}/small", payloads))

    return RunResult(
        local_read_mbps=local_read,
        local_write_mbps=mbps(both, 2 * size),
        local_write_2x_mbps=mbps(both),
        local_write_2x_parallel_mbps=mbps(both_parallel),
        loopback_tcp_mbps=tcp,
        w1_write_mbps=mbps(w1_s),
        w2_read_mbps=mbps(w2_s),
        w3_write_files_per_s=plan.small_count / write_s,
        w3_read_files_per_s=plan.small_count / read_s,
        rss_client_mib=rss["client"],
        rss_namenode_mib=rss["namenode"],
        rss_datanode1_mib=rss["datanode1"],
        rss_datanode2_mib=rss["datanode2"],
    )


# --- report --------------------------------------------------------------------------------

UNITS = {
    "w1_write_mbps": "MB/s",
    "w2_read_mbps": "MB/s",
    "w3_write_files_per_s": "files/s",
    "w3_read_files_per_s": "files/s",
    "rss_client_mib": "MiB",
    "rss_namenode_mib": "MiB",
    "rss_datanode1_mib": "MiB",
    "rss_datanode2_mib": "MiB",
    "local_write_2x_mbps": "MB/s",
    "local_write_2x_parallel_mbps": "MB/s",
    "local_write_mbps": "MB/s",
    "local_read_mbps": "MB/s",
    "loopback_tcp_mbps": "MB/s",
}

RATIOS: dict[str, Callable[[RunResult], float]] = {
    "ratio_w1_to_local_write_2x": lambda r: r.w1_write_mbps / r.local_write_2x_mbps,
    "ratio_w1_to_local_write_2x_parallel": lambda r: (
        r.w1_write_mbps / r.local_write_2x_parallel_mbps
    ),
    "ratio_w1_to_loopback_tcp": lambda r: r.w1_write_mbps / r.loopback_tcp_mbps,
    "ratio_w2_to_local_read": lambda r: r.w2_read_mbps / r.local_read_mbps,
    "ratio_w2_to_loopback_tcp": lambda r: r.w2_read_mbps / r.loopback_tcp_mbps,
}


def summarize(values: list[float], unit: str) -> dict[str, Any]:
    return {
        "unit": unit,
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def fmt(value: float, unit: str) -> str:
    return f"{value:.3f}" if unit == "ratio" else f"{value:.1f}"


def report(
    plan: Plan, results: list[RunResult], state: State, work: Path, elapsed: float
) -> dict[str, Any]:
    figures = {
        name: summarize([getattr(r, name) for r in results], unit) for name, unit in UNITS.items()
    }
    ratios = {name: summarize([f(r) for r in results], "ratio") for name, f in RATIOS.items()}
    notes = []
    if not state.cache_dropped:
        notes.append(
            "page cache NOT dropped (no permission to write /proc/sys/vm/drop_caches): "
            "W2 and local_read may be served from memory"
        )
    if not state.peak_reset:
        notes.append(
            "VmHWM could not be reset (/proc/PID/clear_refs): peak RSS figures are lifetime "
            "peaks up to the end of W2, not peaks over W1+W2 alone"
        )
    for line in notes:
        note(f"NOTE: {line}")
    for name, fig in (figures | ratios).items():
        unit = fig["unit"]
        for suffix, key in (("", "median"), ("_min", "min"), ("_max", "max")):
            print(f"{name}{suffix} {fmt(fig[key], unit)} {unit}")
    print(f"page_cache_dropped {int(state.cache_dropped)} bool")
    print(f"peak_rss_reset_before_w1 {int(state.peak_reset)} bool")
    sys.stdout.flush()
    return {
        "plan": asdict(plan),
        "figures": figures,
        "ratios": ratios,
        "page_cache_dropped": state.cache_dropped,
        "peak_rss_reset_before_w1": state.peak_reset,
        "client_ru_maxrss_whole_run_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "notes": notes,
        "host": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "work_dir_fs": fs_type(work),
            "mem_total_kib": _meminfo_total(),
        },
        "total_seconds": elapsed,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _meminfo_total() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


# --- main ----------------------------------------------------------------------------------


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up runs."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated(f"signal {signum}")


def _print_log_tails(root: Path, lines: int = 15) -> None:
    for log in sorted(root.glob("*.log")):
        try:
            tail = log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        note(f"--- last lines of {log.name} ---")
        for line in tail:
            print(f"    {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    plan = make_plan(args.quick, args.runs)
    signal.signal(signal.SIGTERM, _on_sigterm)

    started = time.perf_counter()
    work = make_workdir(args.dir)
    note(f"{plan.mode} mode, {plan.runs} run(s); data in {work} ({fs_type(work)})")
    cluster = LocalCluster(work / "cluster", datanodes=DATANODES)
    state = State()
    results: list[RunResult] = []
    failed = True
    try:
        source = work / "source.bin"
        t0 = time.perf_counter()
        source_sha = generate_file(source, plan.big_size)
        note(f"generated {plan.big_size / MiB:.0f} MiB source in {time.perf_counter() - t0:.1f}s")
        cluster.start()
        note(f"cluster up at {cluster.url}")
        with asyncio.Runner() as runner:
            fs = AsyncClient(cluster.url, user="bench", replication=REPLICATION)
            try:
                for i in range(1, plan.runs + 1):
                    r = one_run(i, plan, work, source, source_sha, cluster, runner, fs, state)
                    results.append(r)
                    note(
                        f"run {i}/{plan.runs}: W1 {r.w1_write_mbps:.1f} MB/s, "
                        f"W2 {r.w2_read_mbps:.1f} MB/s, W3 {r.w3_write_files_per_s:.1f}/"
                        f"{r.w3_read_files_per_s:.1f} files/s, local write 2x "
                        f"{r.local_write_2x_mbps:.1f} (parallel "
                        f"{r.local_write_2x_parallel_mbps:.1f}) MB/s, local read "
                        f"{r.local_read_mbps:.1f} MB/s, tcp {r.loopback_tcp_mbps:.1f} MB/s"
                    )
            finally:
                runner.run(fs.close())
        data = report(plan, results, state, work, time.perf_counter() - started)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
        note(f"results written to {args.json}; total {time.perf_counter() - started:.0f}s")
        failed = False
        return 0
    except BenchFailure as exc:
        note(f"FAILED: {exc}")
        return 1
    except KeyboardInterrupt as exc:
        failed = False
        note("interrupted; stopping the cluster and deleting its data")
        return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
    finally:
        if failed:
            _print_log_tails(work / "cluster")
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
