#!/usr/bin/env python3
"""W5: several client processes writing 64 KiB files at once.

run.py calls ``w5_parallel_writes`` (pydfs, through the SDK) or ``w5_mount_writes`` (any mounted
file system: a peer's), which start the processes, each this file run as a script:

    python bench/w5.py --namenode URL [--token TOKEN] [--ca CA] [--user USER] --dir DFS_DIR \
        --proc K --files N --size BYTES --seed SEED
    python bench/w5.py --mount --dir LOCAL_DIR --proc K --files N --size BYTES --seed SEED

A child connects (or checks its directory), makes its payloads (untimed), prints ``ready``, waits
for a line ``go`` on stdin, writes its files into its directory one after another (through the
SDK's ``write_bytes``, or with open-write-close), prints one JSON line (files, bytes, its own
seconds) and waits for a line ``bye`` before it closes and exits. The parent says ``go`` to all
children at once once every one is ready, times until the last one has answered (the CPU of
every process over that time too), then says ``bye``: a child done early does not close its
client and end its interpreter while others still write, nor is that counted. The payloads are
a function of (seed, K, file), so the parent checks a sample of the files against what it
computes itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from common import MB, BenchFailure, Endpoint, Samples, connect, spread
from machine import CpuMeter
from pydfs.client.aio import AsyncClient
from workloads import Cpu

CHILD_TIMEOUT = 600.0  # seconds for all children to get ready, and again to finish


def payload(seed: int, proc: int, index: int, size: int) -> bytes:
    """The content of file *index* of child *proc*: pseudo-random, the same in every process."""
    return random.Random(f"{seed}/{proc}/{index}").randbytes(size)


def file_name(index: int) -> str:
    return f"f{index:04d}"


# --- the parent ----------------------------------------------------------------------------


async def w5_parallel_writes(
    fs: AsyncClient,
    target: Endpoint,
    base: str,
    *,
    procs: int,
    files: int,
    size: int,
    verify_per_proc: int,
    seed: int,
    logdir: Path,
    cpu: Cpu | None = None,
    uvloop: bool = False,
) -> Samples:
    """*procs* processes, *files* files each, of *size* bytes, into ``base/pK``; then every listing
    is checked and *verify_per_proc* files of each process are read back and compared. The CPU
    from go to the last answer, in % of one core: ``w5_client_cpu_pct`` all the client processes
    together, ``w5_machine_cpu_pct`` the whole machine, and ``w5_<name>_cpu_pct`` each server
    *cpu* names (pids by name, and the names that are process trees). *uvloop*: the processes
    run their clients on uvloop."""
    for k in range(procs):
        await fs.mkdir(f"{base}/p{k}", parents=True)
    argvs = [
        _child_argv(spread(target, k), f"{base}/p{k}", k, files, size, seed) for k in range(procs)
    ]
    if uvloop:
        argvs = [[*argv, "--uvloop"] for argv in argvs]
    seconds, pct = await asyncio.to_thread(_run_children, argvs, procs * files, logdir, cpu)
    rng = random.Random(seed)
    for k in range(procs):
        directory = f"{base}/p{k}"
        entries = await fs.ls(directory)
        names = {e.name for e in entries}
        wrong = [e.name for e in entries if e.size != size]
        if names != {file_name(i) for i in range(files)} or wrong:
            raise BenchFailure(
                f"W5: {directory} holds {len(entries)} files ({len(wrong)} not of {size} bytes), "
                f"expected {files}"
            )
        for i in rng.sample(range(files), min(verify_per_proc, files)):
            path = f"{directory}/{file_name(i)}"
            if await fs.read_bytes(path) != payload(seed, k, i, size):
                raise BenchFailure(f"W5: {path} read back differs from what child {k} wrote")
    total = procs * files
    return {
        "w5_files_per_s": [total / seconds],
        "w5_mbps": [total * size / MB / seconds],
        **{f"w5_{who}_cpu_pct": [p] for who, p in pct.items()},
    }


def w5_mount_writes(
    base: Path,
    *,
    procs: int,
    files: int,
    size: int,
    verify_per_proc: int,
    seed: int,
    logdir: Path,
) -> Samples:
    """W5 on a mounted file system: the same processes and files as ``w5_parallel_writes``, each
    written with open-write-close into ``base/pK``; then the same checks, and the CPU of the
    client processes and of the machine as for pydfs. A wrong answer raises ``OSError`` (the
    file system's fault, not pydfs's)."""
    for k in range(procs):
        (base / f"p{k}").mkdir(parents=True)
    argvs = [_script_argv(["--mount"], base / f"p{k}", k, files, size, seed) for k in range(procs)]
    seconds, pct = _run_children(argvs, procs * files, logdir)
    rng = random.Random(seed)
    for k in range(procs):
        directory = base / f"p{k}"
        with os.scandir(directory) as it:
            sizes = {e.name: e.stat().st_size for e in it}
        if set(sizes) != {file_name(i) for i in range(files)} or set(sizes.values()) != {size}:
            raise OSError(f"W5: {directory} holds {len(sizes)} files, expected {files} of {size} B")
        for i in rng.sample(range(files), min(verify_per_proc, files)):
            if (directory / file_name(i)).read_bytes() != payload(seed, k, i, size):
                raise OSError(f"W5: {directory / file_name(i)} read back differs")
    total = procs * files
    return {
        "w5_files_per_s": [total / seconds],
        "w5_mbps": [total * size / MB / seconds],
        **{f"w5_{who}_cpu_pct": [p] for who, p in pct.items()},
    }


def _script_argv(
    where: list[str], directory: str | Path, k: int, files: int, size: int, seed: int
) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), *where, "--dir", str(directory)]
    argv += ["--proc", str(k), "--files", str(files), "--size", str(size)]
    return [*argv, "--seed", str(seed)]


def _child_argv(
    target: Endpoint, directory: str, k: int, files: int, size: int, seed: int
) -> list[str]:
    argv = _script_argv(["--namenode", target.url], directory, k, files, size, seed)
    if target.token is not None:
        argv += ["--token", target.token]
    if target.ca is not None:
        argv += ["--ca", target.ca]
    return [*argv, "--user", target.user]


def _run_children(
    argvs: list[list[str]],
    want_files: int,
    logdir: Path,
    cpu: Cpu | None = None,
) -> tuple[float, dict[str, float]]:
    """Start the children, wait for all to be ready, say go, wait for all to answer; returns the
    wall time from go to the last answer, and with *cpu* the CPU of those processes and of the
    children (summed as ``client``) over it, in % of one core."""
    logdir.mkdir(parents=True, exist_ok=True)
    children: list[tuple[subprocess.Popen[str], Path]] = []
    try:
        for k, argv in enumerate(argvs):
            log = logdir / f"w5-child-{k}.stderr"
            with open(log, "wb") as err:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                )
            children.append((proc, log))
        deadline = time.monotonic() + CHILD_TIMEOUT
        for k, (proc, log) in enumerate(children):
            if (line := _line(proc, k, log, deadline)) != "ready":
                raise BenchFailure(f"W5: child {k} said {line!r}, not ready")
        pids, trees = cpu or ({}, frozenset())
        clients = {f"client{k}": proc.pid for k, (proc, _) in enumerate(children)}
        with CpuMeter({**pids, **clients}, trees) as meter:
            t0 = time.perf_counter()
            for proc, _ in children:
                stdin: IO[str] | None = proc.stdin
                assert stdin is not None
                stdin.write("go\n")
                stdin.flush()
            deadline = time.monotonic() + CHILD_TIMEOUT
            answers = [
                json.loads(_line(proc, k, log, deadline)) for k, (proc, log) in enumerate(children)
            ]
            elapsed = time.perf_counter() - t0
        for proc, _ in children:
            assert proc.stdin is not None
            proc.stdin.write("bye\n")
            proc.stdin.flush()
        for k, (proc, log) in enumerate(children):
            if proc.wait(CHILD_TIMEOUT) != 0:
                raise BenchFailure(f"W5: child {k} exited {proc.returncode}; see {_tail(log)}")
        written = sum(a["files"] for a in answers)
        if written != want_files:
            raise BenchFailure(f"W5: children wrote {written} files, not {want_files}")
        pct = {k: v for k, v in meter.pct.items() if k not in clients}
        return elapsed, pct | {"client": sum(meter.pct[k] for k in clients)}
    finally:
        for proc, _ in children:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


def _line(proc: subprocess.Popen[str], k: int, log: Path, deadline: float) -> str:
    """The next line child *k* prints, within the deadline."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
    if not ready:
        raise BenchFailure(f"W5: child {k} said nothing in time; {_tail(log)}")
    line = proc.stdout.readline()
    if not line:
        raise BenchFailure(f"W5: child {k} exited {proc.wait()}; {_tail(log)}")
    return line.strip()


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no stderr"
    return "stderr: " + (" | ".join(lines[-3:]) or "empty")


# --- a child -------------------------------------------------------------------------------


async def _child(args: argparse.Namespace) -> int:
    data = [payload(args.seed, args.proc, i, args.size) for i in range(args.files)]
    async with connect(Endpoint(args.namenode, args.token, args.user, args.ca)) as fs:
        await fs.info(args.dir)  # the connection is open and the directory there before go
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return 1
        t0 = time.perf_counter()
        for i, content in enumerate(data):
            status = await fs.write_bytes(f"{args.dir}/{file_name(i)}", content)
            if status.size != len(content):
                raise BenchFailure(f"{status.path} committed with {status.size} bytes")
        seconds = time.perf_counter() - t0
        answer = {"files": len(data), "bytes": sum(map(len, data)), "seconds": seconds}
        print(json.dumps(answer), flush=True)
        sys.stdin.readline()  # "bye": the others are done too
    return 0


def _mount_child(args: argparse.Namespace) -> int:
    """Open-write-close each file into a directory of a mounted file system."""
    data = [payload(args.seed, args.proc, i, args.size) for i in range(args.files)]
    directory = Path(args.dir)
    if not directory.is_dir():
        return 1
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    t0 = time.perf_counter()
    for i, content in enumerate(data):
        with open(directory / file_name(i), "wb") as f:
            f.write(content)
    seconds = time.perf_counter() - t0
    answer = {"files": len(data), "bytes": sum(map(len, data)), "seconds": seconds}
    print(json.dumps(answer), flush=True)
    sys.stdin.readline()  # "bye": the others are done too
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="one W5 client process (started by run.py)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--namenode", help="write through the SDK to this name node")
    where.add_argument("--mount", action="store_true", help="write into --dir on a mount")
    parser.add_argument("--token")
    parser.add_argument("--ca")
    parser.add_argument("--user", default=Endpoint("").user)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--proc", type=int, required=True)
    parser.add_argument("--files", type=int, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--uvloop", action="store_true", help="run the client on uvloop")
    args = parser.parse_args()
    if args.mount:
        return _mount_child(args)
    if args.uvloop:
        import uvloop

        return uvloop.run(_child(args))
    return asyncio.run(_child(args))


if __name__ == "__main__":
    sys.exit(main())
