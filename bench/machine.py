"""The host: where to put data, page cache, process memory and CPU, and the machine's own limits
(fsync'd local writes, a cold local read, loopback TCP) that the pydfs figures are compared to."""

from __future__ import annotations

import gc
import hashlib
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

from common import BENCH_DIR, IO_CHUNK, BenchFailure
from pydfs.datanode.blockstore import fs_type

# --- where the data goes -------------------------------------------------------------------


def make_workdir(requested: str | None, prefix: str = "pydfs-bench-") -> Path:
    """A fresh directory on a real disk: --dir, else the temp dir unless it is in memory."""
    if requested:
        parent = Path(requested).expanduser()
        parent.mkdir(parents=True, exist_ok=True)
    else:
        parent = Path(tempfile.gettempdir())
        if fs_type(parent) in ("tmpfs", "ramfs"):
            parent = BENCH_DIR  # keep the data on the disk that holds the repository
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def drop_caches() -> bool:
    """``sync; echo 3 > /proc/sys/vm/drop_caches``; False when not permitted."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        return False
    return True


def meminfo_total_kib() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --- processes: memory and CPU -------------------------------------------------------------


def status_mib(pid: int, field: str) -> float:
    """A ``kB`` field of /proc/PID/status (``VmRSS``, ``VmHWM``), in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise BenchFailure(f"no {field} in /proc/{pid}/status")


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM of *pid* to its current RSS (``echo 5 > /proc/PID/clear_refs``)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5\n")
    except OSError:
        return False
    return True


class PeakRss:
    """Peak RSS of some processes over a stretch of work: ``with PeakRss(pids) as peak: ...``,
    then ``peak.mib``.

    VmHWM of each process is reset when the block starts and read when it ends, so the peak is
    exact. Where the reset is not permitted (``exact`` is then False) a thread samples VmRSS
    every 20 ms instead, which can miss a short spike.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.exact = True
        self.mib: dict[str, float] = {}
        self._sampled = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakRss:
        gc.collect()  # what this process freed before is not this block's peak
        for pid in self.pids.values():
            self.exact &= reset_peak_rss(pid)
        if not self.exact:
            self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            for name, pid in self.pids.items():
                try:
                    rss = status_mib(pid, "VmRSS")
                except (OSError, BenchFailure):
                    continue
                self._sampled[name] = max(self._sampled[name], rss)

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.mib = dict(self._sampled)
        else:
            self.mib = {name: status_mib(pid, "VmHWM") for name, pid in self.pids.items()}


def descendants(pid: int) -> list[int]:
    """Every living process below *pid* (its children, theirs, ...)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:  # the task ended meanwhile
                continue
            found += kids
            todo += kids
    return found


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int, tree: bool = False) -> float:
    """User + system CPU time *pid* has used so far (all its threads); with *tree*, that of
    every process below it too, living or ended (an ended child's time is in its parent's
    ``cutime``/``cstime`` once reaped), as for a PostgreSQL server and its backends."""
    fields = _stat_fields(pid)
    ticks = int(fields[11]) + int(fields[12])
    if tree:
        ticks += int(fields[13]) + int(fields[14])
        for child in descendants(pid):
            try:
                kid = _stat_fields(child)
            except OSError:  # ended meanwhile: its time moves to cutime, which we missed
                continue
            ticks += int(kid[11]) + int(kid[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_pss_mib(pid: int) -> float:
    """Proportional set size of *pid* and every process below it, in MiB: memory they share
    (PostgreSQL's shared buffers) counts once in all."""
    total_kib = 0
    for proc in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{proc}/smaps_rollup") as f:
                total_kib += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return total_kib / 1024


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (not idle, not waiting for I/O), all cores."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by some processes while a block runs, as % of one core over its wall time;
    those named in *trees* with every process below them (``cpu_seconds(tree=True)``). Also
    ``machine``: the whole machine's busy time (100 % per busy core), so that what other
    programs took shows."""

    def __init__(self, pids: dict[str, int], trees: frozenset[str] = frozenset()) -> None:
        self.pids = pids
        self.trees = trees
        self.pct: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        now = {name: cpu_seconds(pid, name in self.trees) for name, pid in self.pids.items()}
        return now | {"machine": machine_busy_seconds()}

    def __enter__(self) -> CpuMeter:
        self._cpu = self._now()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:  # a process may be gone: the error on its way says more
            return
        wall = time.perf_counter() - self._t0
        now = self._now()
        self.pct = {name: 100 * (now[name] - self._cpu[name]) / wall for name in now}


# --- local files ---------------------------------------------------------------------------


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
