"""The peers of the side-by-side benchmark (``run.py --peers``): MooseFS and SeaweedFS, each
started on loopback with 2 copies of every file by its scripts in ``bench/peers/``, given the
same W1, W2, W3 and W5 that pydfs gets through its SDK, but through the peer's FUSE mount with
Python's open-write-close, and torn down again.

A peer is started afresh for every run and stopped (its data deleted) right after it, so that
only one file system is busy at a time and a peer starts each run empty, as pydfs's files of a
run go into a directory of their own. A peer that cannot be installed or started, or that
fails a workload, is skipped from then on with a one-line reason; pydfs's figures are kept.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from common import BENCH_DIR, IO_CHUNK, MB, BenchFailure, Samples, note
from machine import drop_caches, read_file, sha256_file
from w5 import w5_mount_writes

SCRIPTS = BENCH_DIR / "peers"
SETUP_TIMEOUT = 900.0  # seconds; the first setup may install packages
TEARDOWN_TIMEOUT = 120.0


@dataclass(frozen=True)
class PeerKind:
    """One peer configuration and how its scripts are told where to live and which ports."""

    name: str  # as given to --peers
    label: str  # in the side-by-side table
    scripts: str  # directory under bench/peers/
    knobs: dict[str, str]  # environment for setup.sh
    root_var: str  # the variable naming the peer's directory
    port_var: str  # the variable naming its first port
    ports: int  # consecutive ports from there
    grpc_offset: int | None = None  # each port also has port + offset in use
    teardown_args: tuple[str, ...] = ()
    teardown_env: dict[str, str] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        """What its figures' names start with: ``moosefs_fsync_w1_write_mbps``."""
        return self.name.replace("-", "_") + "_"


def _moosefs(name: str, label: str, fsync: str) -> PeerKind:
    # MooseFS's daemons and mount run at nice -19 by default; here they run at 0, as pydfs does,
    # so that neither side takes the 2 shared cores from the other work on the machine.
    knobs = {"MFS_CS_FSYNC": fsync, "MFS_NICE": "0"}
    return PeerKind(name, label, "moosefs", knobs, "MFS_BASE", "MFS_PORT0", 5, None, ("--purge",))


PEERS: dict[str, PeerKind] = {
    kind.name: kind
    for kind in (
        _moosefs("moosefs", "MooseFS", "0"),
        _moosefs("moosefs-fsync", "MooseFS (fsync)", "1"),
        PeerKind(
            "seaweedfs",
            "SeaweedFS",
            "seaweedfs",
            {"SW_CACHE_MB": "0"},  # the mount's chunk cache off: reads reach the volume servers
            "SW_ROOT",
            "SW_PORT0",
            4,
            10_000,
            teardown_env={"SW_WIPE": "1"},
        ),
    )
}


def parse_peers(text: str | None) -> tuple[str, ...]:
    """``--peers``: names separated by commas, ``all`` or ``none``; ValueError on others."""
    if not text or text == "none":
        return ()
    if text == "all":
        return tuple(PEERS)
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in PEERS]
    if unknown or not names:
        raise ValueError(f"--peers takes all, none or some of {', '.join(PEERS)}; not {unknown}")
    return names


class PeerError(Exception):
    """A peer could not be installed or started, or misbehaved: it is skipped, pydfs is not."""


# --- starting and stopping -----------------------------------------------------------------


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_base(kind: PeerKind) -> int:
    """A first port from which all the ports the peer listens on are free now."""
    offsets = (0,) if kind.grpc_offset is None else (0, kind.grpc_offset)
    for _ in range(200):
        base = random.randrange(20_000, 30_000)
        if all(_bindable(base + o + i) for o in offsets for i in range(kind.ports)):
            return base
    raise PeerError("no free range of ports on 127.0.0.1")


def _last_error(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["no output"])[-1][:300]


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done (then act as usual): a teardown that is
    interrupted would leave daemons running or a mount behind."""
    held = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


class Peer:
    """One peer file system under *root*: ``start()`` returns its mount point, ``stop()``
    unmounts it, stops its processes and deletes *root*, whatever state ``start`` left."""

    def __init__(self, kind: PeerKind, root: Path) -> None:
        self.kind = kind
        self.root = root
        self.version = ""
        self.mount = root / "mnt"  # where both scripts mount
        self._env: dict[str, str] | None = None

    def _script(self, name: str, env: dict[str, str], log: Path, timeout: float, *args: str) -> int:
        with open(log, "ab") as out:
            proc = subprocess.run(
                ["bash", str(SCRIPTS / self.kind.scripts / name), *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                start_new_session=True,  # a Ctrl-C at the terminal reaches us, not the scripts
                check=False,
            )
        return proc.returncode

    def start(self) -> Path:
        if os.geteuid() != 0:
            raise PeerError("needs root (packages, FUSE, its daemons' users)")
        self.root.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **self.kind.knobs,
            self.kind.root_var: str(self.root),
            self.kind.port_var: str(free_port_base(self.kind)),
        }
        self._env = env
        log = self.root.parent / f"{self.kind.name}-setup.log"
        log.unlink(missing_ok=True)
        try:
            code = self._script("setup.sh", env, log, SETUP_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise PeerError(f"setup did not finish in {SETUP_TIMEOUT:.0f} s") from exc
        if code != 0:
            raise PeerError(f"setup exited {code}: {_last_error(log)}")
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("version "):
                self.version = line.removeprefix("version ").strip()
        if not os.path.ismount(self.mount):
            raise PeerError(f"setup left nothing mounted at {self.mount}")
        return self.mount

    def stop(self) -> None:
        if self._env is None:
            return
        env = {**self._env, **self.kind.teardown_env}
        log = self.root.parent / f"{self.kind.name}-teardown.log"
        with signals_held():
            try:
                self._script("teardown.sh", env, log, TEARDOWN_TIMEOUT, *self.kind.teardown_args)
            except subprocess.TimeoutExpired:
                note(f"{self.kind.label}: teardown did not finish in {TEARDOWN_TIMEOUT:.0f} s")
            if os.path.ismount(self.mount):  # the script's unmount failed: detach it
                subprocess.run(["fusermount3", "-u", "-z", str(self.mount)], check=False)
        self._env = None


# --- the workloads, through the mount ------------------------------------------------------


@dataclass(frozen=True)
class PeerPlan:
    """What run.py's plan asks of every file system, and where its inputs are."""

    big: Path | None  # W1's source, None when W1/W2 are not run
    big_sha: str
    small_count: int  # 0: no W3
    small_size: int
    w5_procs: int  # 0: no W5
    w5_files: int
    w5_size: int
    w5_verify_per_proc: int
    scratch: Path  # local directory for W2's copy and W5's logs


def big_file(mount: Path, plan: PeerPlan) -> tuple[Samples, bool]:
    """W1: the source (read first, untimed, so that it is in the page cache, as for pydfs's W1)
    copied in 1 MiB writes into a new file on the mount, until close returns. W2: after dropping
    the page cache, that file copied back to a local file in 1 MiB reads, as the SDK's download
    does; then its sha256 checked (untimed). Returns the samples and whether the cache was
    dropped."""
    assert plan.big is not None
    size = read_file(plan.big)
    target = mount / "big.bin"
    buf = bytearray(IO_CHUNK)
    view = memoryview(buf)
    t0 = time.perf_counter()
    with open(plan.big, "rb", buffering=0) as src, open(target, "wb", buffering=0) as dst:
        while n := src.readinto(buf):
            dst.write(view[:n])
    w1_s = time.perf_counter() - t0
    dropped = drop_caches()
    back = plan.scratch / "peer-download.bin"
    t0 = time.perf_counter()
    with open(target, "rb", buffering=0) as src, open(back, "wb", buffering=0) as dst:
        while n := src.readinto(buf):
            dst.write(view[:n])
    w2_s = time.perf_counter() - t0
    got_sha = sha256_file(back)
    back.unlink()
    if got_sha != plan.big_sha:
        raise PeerError(f"W2: the file read back differs from the source (sha256 {got_sha})")
    samples = {"w1_write_mbps": [size / MB / w1_s], "w2_read_mbps": [size / MB / w2_s]}
    return samples, dropped


def _forget_cached(path: Path) -> None:
    """Drop the kernel's cached pages of one file on the mount (the client side only: the peer's
    servers keep their page cache, as pydfs's data nodes keep theirs between W3's write and
    read, and the SDK has no cache of its own)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def small_files(mount: Path, plan: PeerPlan) -> Samples:
    """W3: *small_count* files opened, written and closed one after another into one directory;
    then each one's cached pages dropped (untimed), then each opened, read and closed, and
    compared."""
    directory = mount / "small"
    directory.mkdir()
    payloads = [os.urandom(plan.small_size) for _ in range(plan.small_count)]
    paths = [directory / f"f{i:05d}" for i in range(plan.small_count)]
    t0 = time.perf_counter()
    for path, data in zip(paths, payloads, strict=True):
        with open(path, "wb") as f:
            f.write(data)
    write_s = time.perf_counter() - t0
    for path in paths:
        _forget_cached(path)
    t0 = time.perf_counter()
    got = []
    for path in paths:
        with open(path, "rb") as f:
            got.append(f.read())
    read_s = time.perf_counter() - t0
    bad = [p.name for p, want, have in zip(paths, payloads, got, strict=True) if want != have]
    if bad:
        raise PeerError(f"W3: {len(bad)} files read back wrong, e.g. {bad[:3]}")
    return {
        "w3_write_files_per_s": [plan.small_count / write_s],
        "w3_read_files_per_s": [plan.small_count / read_s],
    }


def measure(kind: PeerKind, root: Path, plan: PeerPlan) -> tuple[Samples, bool, str]:
    """Start the peer under *root*, run the plan's workloads on its mount, stop it. Returns the
    samples (names prefixed with the peer's), whether every cache drop was permitted, and the
    peer's version. PeerError (after the teardown) when it cannot run or misbehaves."""
    peer = Peer(kind, root)
    samples: Samples = {}
    dropped = True
    try:
        t0 = time.perf_counter()
        mount = peer.start()
        note(f"{kind.label} up in {time.perf_counter() - t0:.1f}s ({peer.version}) at {mount}")
        if plan.big is not None:
            got, dropped = big_file(mount, plan)
            samples |= got
        if plan.small_count:
            samples |= small_files(mount, plan)
        if plan.w5_procs:
            samples |= w5_mount_writes(
                mount / "w5",
                procs=plan.w5_procs,
                files=plan.w5_files,
                size=plan.w5_size,
                verify_per_proc=plan.w5_verify_per_proc,
                seed=random.randrange(1 << 32),
                logdir=plan.scratch / "peer-w5",
            )
    except (OSError, BenchFailure) as exc:  # the peer's fault, not pydfs's
        raise PeerError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        t0 = time.perf_counter()
        peer.stop()
        note(f"{kind.label} stopped and deleted in {time.perf_counter() - t0:.1f}s")
    return {kind.prefix + name: values for name, values in samples.items()}, dropped, peer.version
