"""The SDK, the CLI's downloads and the fsspec filesystem where they met a restarted name node,
many writers at once, expired block tokens, shared or special download targets, directories
given to a file removal, and the end of a script."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pyarrow.fs
import pytest

from pydfs.cluster import LocalCluster
from pydfs.fsspec import PydfsFileSystem
from tests.conftest import Cli


def _requests(cluster: LocalCluster, route: str) -> int:
    """How many requests to *route* the name node has answered, by its metrics."""
    with urllib.request.urlopen(f"{cluster.url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        int(float(line.split()[-1]))
        for line in text.splitlines()
        if line.startswith("pydfs_requests_total{") and f'route="{route}"' in line
    )


@pytest.mark.asyncio
async def test_small_writes_survive_a_name_node_restart(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    """The restarted name node knows none of the leases the client keeps on its shelf: the
    client drops them and writes again, rather than failing a burst of writes."""
    cluster = cluster_factory()
    contents = {f"/restart/{i}": os.urandom(100 + 50_000 * (i % 3)) for i in range(24)}
    items = list(contents.items())
    async with cluster.async_client() as fs:
        await fs.mkdir("/restart")
        for path, content in items[:4]:  # batches of 1 and 2, then 4: three on the shelf
            await fs.write_bytes(path, content)
        cluster.restart_namenode()
        cluster.wait_for_live(len(cluster.datanodes))
        for path, content in items[4:8]:
            await fs.write_bytes(path, content)
        await asyncio.gather(*(fs.write_bytes(p, c) for p, c in items[8:]))
        for path, content in contents.items():
            assert await fs.read_bytes(path) == content


@pytest.mark.asyncio
async def test_concurrent_small_writes_share_their_lease_fetches(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    """Writers that find the shelf empty wait for one fetch, sized to them, rather than each
    fetching a batch of its own (200 writers once fetched 6,071 leases)."""
    cluster = cluster_factory()
    writers = 200
    async with cluster.async_client() as fs:
        await fs.mkdir("/many")
        before = _requests(cluster, "/v1/uploads/batch")
        await asyncio.gather(*(fs.write_bytes(f"/many/{i}", b"%d" % i) for i in range(writers)))
        fetches = _requests(cluster, "/v1/uploads/batch") - before
        shelved = sum(len(shelf.grants) for shelf in fs.transfer._shelves.values())
        assert await fs.read_bytes("/many/123") == b"123"
    assert 1 <= fetches <= writers // 64 + 6, fetches
    assert shelved < 64, shelved  # at most one batch's worth left over


def test_writes_outlive_the_block_token_of_their_grant(
    cluster_factory: Callable[..., LocalCluster],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A file opened and written later, a slow pipe, and leases that waited on the shelf all
    hold grants whose block tokens have expired by the time the first byte goes out."""
    lifetime = 2
    monkeypatch.setenv("PYDFS_NAMENODE_BLOCK_TOKEN_LIFETIME", str(lifetime))
    cluster = cluster_factory()
    cli = Cli(cluster.url, tmp_path, cluster.admin_token)
    data = {name: os.urandom(size) for name, size in [("a", 10), ("b", 20), ("c", 30)]}
    data |= {"opened": os.urandom(300_000), "piped": os.urandom(150_000)}
    data |= {"shelf-large": os.urandom(200_000), "shelf-small": os.urandom(10_000)}
    with cluster.client() as client:
        for name in ("a", "b", "c", "a"):  # batches of 1, 2 and 4: three leases on the shelf
            client.write_bytes(f"/{name}", data[name])
        writer = client.open("/opened", "wb")
        pipe = subprocess.Popen(
            [sys.executable, "-m", "pydfs", "put", "-", "/piped"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli.env,
            cwd=tmp_path,
        )
        try:
            time.sleep(lifetime + 1.5)  # every token granted so far has expired
            writer.write(data["opened"])
            writer.close()
            client.write_bytes("/shelf-large", data["shelf-large"])  # sent again, rewound
            client.write_bytes("/shelf-small", data["shelf-small"])  # one chunk, kept whole
            _, err = pipe.communicate(data["piped"], timeout=60)
        finally:
            if pipe.poll() is None:
                pipe.kill()
        assert pipe.returncode == 0, err.decode()
        for name, content in data.items():
            assert client.read_bytes(f"/{name}") == content, name


def _put(cli: Cli, tmp_path: Path, name: str, size: int) -> bytes:
    content = os.urandom(size)
    (tmp_path / name).write_bytes(content)
    cli("put", str(tmp_path / name), f"/{name}").ok()
    return content


def test_concurrent_downloads_to_one_target_leave_one_whole_file(cli: Cli, tmp_path: Path) -> None:
    sources = {name: _put(cli, tmp_path, name, 3_000_000) for name in ("one", "two")}
    out = tmp_path / "out"
    out.mkdir()
    target = out / "target.bin"
    for _ in range(3):
        gets = [
            subprocess.Popen(
                [sys.executable, "-m", "pydfs", "get", f"/{name}", str(target), "--force"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=cli.env,
                cwd=tmp_path,
            )
            for name in sources
        ]
        for get in gets:
            _, err = get.communicate(timeout=60)
            assert get.returncode == 0, err.decode()
        assert target.read_bytes() in sources.values()
        assert [p.name for p in out.iterdir()] == ["target.bin"]  # no temporary left behind
        assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_downloads_write_into_devices_and_fifos(cli: Cli, tmp_path: Path) -> None:
    content = _put(cli, tmp_path, "special", 200_000)
    if not stat.S_ISCHR(os.stat("/dev/null").st_mode):
        pytest.skip("/dev/null is not a device on this machine (a download replaced it?)")
    cli("get", "/special", "/dev/null").ok()  # no --force needed: nothing is replaced
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    try:
        result = cli("get", "/special", str(fifo), "--force")
        reader.join(30)
    finally:
        if reader.is_alive():  # the download did not open the FIFO: let the reader go
            with open(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK), "wb"):
                pass
    result.ok()
    assert got == [content]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_file_removal_refuses_a_directory(shared_cluster: LocalCluster) -> None:
    fs = PydfsFileSystem(
        namenode=shared_cluster.url, token=shared_cluster.admin_token, skip_instance_cache=True
    )
    fs.makedirs("/rmdir/empty")
    fs.pipe_file("/rmdir/full/f", b"x")
    for path in ("/rmdir/empty", "/rmdir/full"):
        with pytest.raises(IsADirectoryError):
            fs.rm(path)
        with pytest.raises(IsADirectoryError):
            fs.rm_file(path)
    arrow = pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))
    with pytest.raises(OSError):
        arrow.delete_file("/rmdir/empty")
    assert fs.isdir("/rmdir/empty") and fs.cat_file("/rmdir/full/f") == b"x"
    fs.rm("/rmdir/full/f")  # files still go
    fs.rm("/rmdir", recursive=True)  # and directories, when asked for
    assert not fs.exists("/rmdir")


SCRIPT = """
import asyncio, gc, os, sys
import pandas as pd
import fsspec
from pydfs.fsspec import PydfsFileSystem

base, namenode = sys.argv[1], sys.argv[2]
frame = pd.DataFrame({"n": range(50_000)})
frame.to_csv(f"{base}/script/table.csv", index=False)
assert pd.read_csv(f"{base}/script/table.csv").equals(frame)
fs = fsspec.filesystem("pydfs", namenode=namenode)
fs.pipe({f"/script/small-{i}": b"x" for i in range(5)})  # leases left on the shelf

async def main():
    afs = PydfsFileSystem(namenode=namenode, asynchronous=True, skip_instance_cache=True)
    await afs._pipe_file("/script/async.bin", os.urandom(300_000))
    await afs._pipe_file("/script/async-small.bin", b"small")
    assert len(await afs._cat_file("/script/async.bin")) == 300_000
    del afs
    gc.collect()  # dropped, unclosed, while its loop runs: its finalizer runs on that loop

asyncio.run(main())
print("done")
"""


def test_a_script_ends_without_unclosed_sessions(
    shared_cluster: LocalCluster, tmp_path: Path
) -> None:
    """What the filesystems opened (aiohttp sessions, the lean links to data nodes, the name
    node's pool) is closed when they go, or at exit, with nothing left for the garbage
    collector to warn about: the script runs in development mode, which shows every one."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDFS_")}
    env["PYDFS_TOKEN"] = shared_cluster.admin_token
    base = "pydfs://" + shared_cluster.url.removeprefix("http://")
    run = subprocess.run(
        [sys.executable, "-X", "dev", str(script), base, shared_cluster.url],
        capture_output=True,
        env=env,
        timeout=120,
    )
    err = run.stderr.decode()
    assert run.returncode == 0 and run.stdout.strip() == b"done", err
    assert "nclosed" not in err, err
