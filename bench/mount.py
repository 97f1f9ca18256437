#!/usr/bin/env python3
"""W1, W2 and W3 through a mounted file system: pydfs's, or any other (MooseFS, SeaweedFS, a
local disk), with the same programs, so that the figures compare.

    python bench/mount.py DIR              # DIR: a scratch directory on any mounted file system
    python bench/mount.py --pydfs          # start a local pydfs cluster, mount it, run, clean up
    python bench/mount.py --pydfs --quick  # small sizes (CI)

W1: ``dd bs=1M conv=fsync`` of a random local file (1 GiB, made untimed) into DIR.
W2: ``dd bs=1M`` of it back to /dev/null, after dropping the page cache (needs root; otherwise
    said on stderr, and the read may be warm).
W3: 1,000 files of 4 KiB, each opened, written and closed one after another; then, after
    dropping the page cache, each opened, read, checked and closed.

stdout holds ``name value unit`` lines; notes go to stderr. With ``--pydfs`` the SDK's own W1
and W2 (``AsyncClient.upload``/``download`` of the same file) are measured too, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MB = 1_000_000


def note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def drop_caches() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        note("could not drop the page cache (not root?): reads may be warm")


def dd(src: Path | str, dst: Path | str, *extra: str) -> float:
    started = time.perf_counter()
    subprocess.run(["dd", f"if={src}", f"of={dst}", "bs=1M", "status=none", *extra], check=True)
    return time.perf_counter() - started


def run(target: Path, source: Path, files: int) -> dict[str, float]:
    size = source.stat().st_size
    work = target / f"bench-{os.getpid()}"
    work.mkdir()
    try:
        figures = {"w1_write_mbps": size / MB / dd(source, work / "w1", "conv=fsync")}
        drop_caches()
        figures["w2_read_mbps"] = size / MB / dd(work / "w1", "/dev/null")
        if subprocess.run(["cmp", "-s", str(source), str(work / "w1")]).returncode:
            raise SystemExit("W1/W2: the file read back differs")

        small = work / "w3"
        small.mkdir()
        payloads = [os.urandom(4096) for _ in range(files)]
        started = time.perf_counter()
        for i, data in enumerate(payloads):
            with open(small / f"f{i:05}", "wb") as f:
                f.write(data)
        figures["w3_write_files_per_s"] = files / (time.perf_counter() - started)
        drop_caches()
        started = time.perf_counter()
        for i, data in enumerate(payloads):
            with open(small / f"f{i:05}", "rb") as f:
                if f.read() != data:
                    raise SystemExit(f"W3: f{i:05} read back differs")
        figures["w3_read_files_per_s"] = files / (time.perf_counter() - started)
        return figures
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def pydfs_mount(scratch: Path) -> Iterator[tuple[Path, object]]:
    """A local cluster as the benchmark runs it (2 data nodes, replication 2, 64 MiB blocks),
    mounted on a directory of *scratch*; yields the mount point and the cluster."""
    from pydfs.cluster import LocalCluster

    cluster = LocalCluster(scratch / "cluster", datanodes=2).start()
    where = scratch / "mnt"
    where.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDFS_")}
    env.update(
        PYDFS_NAMENODE=cluster.url,
        PYDFS_TOKEN=cluster.admin_token,
        PYDFS_CONFIG=str(scratch / "client.toml"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pydfs", "mount", str(where), "--foreground"],
        env=env,
        stderr=open(scratch / "mount.log", "wb"),  # noqa: SIM115 - the child holds it
    )
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(where):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"not mounted: {(scratch / 'mount.log').read_text()}")
            time.sleep(0.05)
        yield where / "tmp", cluster
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(where)], capture_output=True)
        proc.wait(timeout=30)
        cluster.stop()


async def sdk(cluster: object, source: Path, scratch: Path) -> dict[str, float]:
    from pydfs.client import AsyncClient

    size = source.stat().st_size
    async with AsyncClient(cluster.url, token=cluster.admin_token) as fs:  # type: ignore[attr-defined]
        started = time.perf_counter()
        await fs.upload(source, "/tmp/sdk-w1")
        write = size / MB / (time.perf_counter() - started)
        drop_caches()
        started = time.perf_counter()
        await fs.download("/tmp/sdk-w1", scratch / "back", overwrite=True)
        read = size / MB / (time.perf_counter() - started)
        await fs.delete("/tmp/sdk-w1")
    (scratch / "back").unlink()
    return {"sdk_w1_write_mbps": write, "sdk_w2_read_mbps": read}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", nargs="?", type=Path, help="a scratch directory on the mount")
    parser.add_argument("--pydfs", action="store_true", help="start and mount a local cluster")
    parser.add_argument("--quick", action="store_true", help="64 MiB and 100 files")
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--scratch", type=Path, help="for the source file (default $TMPDIR)")
    args = parser.parse_args()
    if (args.dir is None) == (not args.pydfs):
        parser.error("give a directory on a mount, or --pydfs")
    size_mib, files = (64, 100) if args.quick else (args.size_mib, args.files)
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        scratch = Path(tmp)
        source = scratch / "source.bin"
        with open(source, "wb") as f:
            for _ in range(size_mib):
                f.write(os.urandom(1 << 20))
        note(f"source: {size_mib} MiB; W3: {files} files of 4 KiB")
        if args.pydfs:
            with pydfs_mount(scratch) as (target, cluster):
                figures = run(target, source, files)
                figures |= asyncio.run(sdk(cluster, source, scratch))
        else:
            figures = run(args.dir, source, files)
    for name, value in figures.items():
        unit = "MB/s" if name.endswith("mbps") else "files/s"
        print(f"{name} {value:.1f} {unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
