"""Clients of a cluster of two name nodes on one PostgreSQL: they keep working when one name
node is killed or stopped (SDK, CLI, fsspec), a change whose answer is lost is applied once
(a proxy that drops the answer), and a name node that lost its database answers 503."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import fsspec
import pytest

from pydfs import errors, rpc
from pydfs.client import AsyncClient
from pydfs.cluster import LocalCluster
from pydfs.local_postgres import Postgres, binaries
from tests.conftest import BLOCK_SIZE, Cli

ClusterFactory = Callable[..., LocalCluster]


@pytest.fixture
def pair(cluster_factory: ClusterFactory, postgres_url: str) -> LocalCluster:
    """Two name nodes sharing one database, two data nodes heartbeating to both."""
    return cluster_factory(2, metadata=postgres_url, namenodes=2)


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_the_sdk_goes_on_when_the_first_name_node_goes(pair: LocalCluster, how: str) -> None:
    payload = os.urandom(BLOCK_SIZE + 5)
    with pair.client(namenode=pair.urls) as fs:  # type: ignore[arg-type]
        fs.mkdir("/work")
        fs.write_bytes("/work/before", payload)
        getattr(pair.namenodes[0], how)()
        assert fs.read_bytes("/work/before") == payload
        fs.write_bytes("/work/after", payload[::-1])
        fs.move("/work/after", "/work/moved")
        fs.mkdir("/work/sub")
        assert sorted(e.name for e in fs.ls("/work")) == ["before", "moved", "sub"]
        assert fs.read_bytes("/work/moved") == payload[::-1]
        fs.delete("/work/before")
        assert not fs.exists("/work/before")
    with pair.client(namenode=pair.urls[1]) as other:  # the survivor saw it all
        assert other.read_bytes("/work/moved") == payload[::-1]


def test_the_sdk_fails_over_from_a_name_node_that_hangs(pair: LocalCluster) -> None:
    """SIGSTOP: the kernel still accepts connections, nothing answers them."""
    with pair.client(namenode=pair.urls) as fs:  # type: ignore[arg-type]
        fs.mkdir("/before")
        os.kill(pair.namenodes[0].pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            fs.mkdir("/hung")
            fs.write_bytes("/hung/f", b"small")
            took = time.monotonic() - started
            started = time.monotonic()
            fs.mkdir("/hung/again")  # straight to the name node that answered
            again = time.monotonic() - started
        finally:
            os.kill(pair.namenodes[0].pid, signal.SIGCONT)
        assert fs.read_bytes("/hung/f") == b"small"
    assert took < rpc.ATTEMPT_TIMEOUT + 5 < rpc.FAILOVER_TIMEOUT
    assert again < rpc.ATTEMPT_TIMEOUT / 2


def test_the_cli_goes_on_with_a_list_of_name_nodes(pair: LocalCluster, tmp_path: Path) -> None:
    both = ",".join(pair.urls)
    cli = Cli(both, tmp_path, pair.admin_token)  # PYDFS_NAMENODE=URL1,URL2
    cli("mkdir", "/cli").ok()
    pair.namenodes[0].kill()
    cli("put", "-", "/cli/f", input=b"by env").ok()
    assert cli("cat", "/cli/f").ok().raw == b"by env"
    flag = Cli("http://127.0.0.1:9", tmp_path, pair.admin_token)  # --namenode wins over env
    flag("--namenode", both, "mv", "/cli/f", "/cli/g").ok()
    assert flag("cat", "/cli/g", "--namenode", both).ok().raw == b"by env"
    assert cli("ls", "/cli").ok().out.split() == ["g"]


def test_fsspec_takes_a_list_and_a_url_with_several_hosts(pair: LocalCluster) -> None:
    fs = fsspec.filesystem(
        "pydfs", namenode=pair.urls, token=pair.admin_token, skip_instance_cache=True
    )
    fs.pipe("/tmp/spec", b"listed")
    pair.namenodes[0].kill()
    assert fs.cat("/tmp/spec") == b"listed"
    hosts = ",".join(u.removeprefix("http://") for u in pair.urls)
    url = f"pydfs://{hosts}/tmp/spec-url"
    with fsspec.open(url, "wb", token=pair.admin_token) as f:
        f.write(b"by url")
    with fsspec.open(url, "rb", token=pair.admin_token) as f:
        assert f.read() == b"by url"
    opened, _ = fsspec.core.url_to_fs(url, token=pair.admin_token)
    assert opened.namenode == ",".join(pair.urls)
    assert opened.unstrip_protocol("/x") == f"pydfs://{hosts}/x"


# --- an answer lost after the change was applied --------------------------------------------


class DropOneAnswer:
    """A TCP proxy on 127.0.0.1 in front of a server, forwarding both ways, except that the
    first request whose head holds *armed* reaches the server but its answer never comes
    back: the client's connection is closed as the answer arrives."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.armed: bytes | None = None
        self.dropped = 0
        self.server: asyncio.Server | None = None
        self.open: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> DropOneAnswer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.open:
            writer.transport.abort()
        await asyncio.sleep(0.01)  # the aborted transports finish closing

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open.add(writer)
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.open.add(up_writer)
        doomed = asyncio.Event()

        async def upward() -> None:
            while data := await reader.read(65536):
                if self.armed is not None and self.armed in data:
                    self.armed = None
                    doomed.set()
                up_writer.write(data)
                await up_writer.drain()

        async def downward() -> None:
            while data := await up_reader.read(65536):
                if doomed.is_set():
                    self.dropped += 1
                    return  # the answer is swallowed; both connections close
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(upward()), asyncio.ensure_future(downward())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for w in (writer, up_writer):
            w.transport.abort()


@contextlib.asynccontextmanager
async def through_proxy(
    cluster: LocalCluster, *, alone: bool
) -> AsyncIterator[tuple[DropOneAnswer, AsyncClient]]:
    """A client of *cluster* whose first name node is behind a ``DropOneAnswer`` (and, unless
    *alone*, with the second name node to fail over to)."""
    async with DropOneAnswer(cluster.urls[0]) as proxy:
        urls = [proxy.url] if alone else [proxy.url, *cluster.urls[1:]]
        async with cluster.async_client(namenode=urls) as client:  # type: ignore[arg-type]
            yield proxy, client


@pytest.mark.asyncio
async def test_a_lost_answer_is_answered_again_never_applied_twice(pair: LocalCluster) -> None:
    async with through_proxy(pair, alone=False) as (proxy, fs):
        await fs.mkdir("/lost")  # through the proxy: the first name node is sticky from now

        proxy.armed = b"POST /v1/fs/mkdir"
        made = await fs.mkdir("/lost/dir")  # not AlreadyExists: the retry gets the first answer
        assert made.path == "/lost/dir" and made.type == "dir" and proxy.dropped == 1

        await fs.write_bytes("/lost/a", b"moved once")
        proxy.armed = b"POST /v1/fs/move"  # the client stays on the second name node: go back
        fs.rpc._current = 0
        moved = await fs.move("/lost/a", "/lost/b")  # not NotFound
        assert moved.path == "/lost/b" and proxy.dropped == 2

        fs.rpc._current = 0
        proxy.armed = b"POST /v1/users "
        token = await fs.add_user("carol")  # not AlreadyExists: the token the user was given
        assert proxy.dropped == 3
        async with pair.async_client(namenode=pair.urls[1], token=token) as carol:
            assert (await carol.whoami()).name == "carol"

        fs.rpc._current = 0
        proxy.armed = b"/commit "
        payload = os.urandom(2 * BLOCK_SIZE + 1)
        written = await fs.write_bytes("/lost/file", payload, overwrite=False)
        assert written.size == len(payload) and proxy.dropped == 4
        assert await fs.read_bytes("/lost/file") == payload

        fs.rpc._current = 0
        proxy.armed = b"POST /v1/fs/copy"
        copied = await fs.copy("/lost/b")  # no destination: "b (copy)", made once
        assert copied.path == "/lost/b (copy)" and proxy.dropped == 5

        names = sorted(e.name for e in await fs.ls("/lost"))
        assert names == ["b", "b (copy)", "dir", "file"]


@pytest.mark.asyncio
async def test_a_lost_answer_from_a_lone_name_node_is_answered_again(
    cluster_factory: ClusterFactory,
) -> None:
    """The same name node (SQLite, no other to go to) answers the retry as the first time."""
    cluster = cluster_factory(1)
    async with through_proxy(cluster, alone=True) as (proxy, fs):
        proxy.armed = b"POST /v1/fs/create"
        made = await fs.touch("/tmp/once")
        assert made.path == "/tmp/once" and proxy.dropped == 1
        proxy.armed = b"POST /v1/fs/delete"
        await fs.delete("/tmp/once")  # not NotFound
        assert proxy.dropped == 2 and not await fs.exists("/tmp/once")
        proxy.armed = b"POST /v1/fs/mkdir"
        with pytest.raises(FileNotFoundError):  # a refusal is answered again as a refusal
            await fs.mkdir("/no/such/parent")
        assert proxy.dropped == 3


# --- a name node without its database --------------------------------------------------------


def test_a_name_node_that_lost_its_database_answers_503(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    bin_dir = binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    with Postgres(bin_dir) as pg:
        cluster = cluster_factory(1, metadata=pg.database())
        with cluster.client(failover_timeout=0.5) as fs:
            fs.mkdir("/tmp/up")
            pg.stop()
            with pytest.raises(errors.Unavailable, match="metadata store unreachable"):
                fs.mkdir("/tmp/down")
        request = urllib.request.Request(
            f"{cluster.url}/v1/fs/stat?path=/tmp",
            headers={"Authorization": f"Bearer {cluster.admin_token}"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 503
        body = json.loads(refused.value.read())
        assert body["code"] == "unavailable" and "metadata store unreachable" in body["message"]
