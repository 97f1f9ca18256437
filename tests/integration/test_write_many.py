"""Many small files written at once: their commits go to the name node together
(``POST /uploads/commit-many``), each file keeping its own outcome, through real processes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from pydfs import checksum, errors, wire
from pydfs.client import AsyncClient
from pydfs.cluster import LocalCluster
from tests.integration.test_failover import through_proxy
from tests.integration.test_fsspec_trips import Requests
from tests.integration.test_metrics import scrape

ClusterFactory = Callable[..., LocalCluster]


@pytest_asyncio.fixture
async def fs(shared_cluster: LocalCluster) -> AsyncIterator[AsyncClient]:
    async with shared_cluster.async_client() as client:
        yield client


@pytest_asyncio.fixture
async def top(fs: AsyncClient) -> str:
    path = f"/many-{uuid.uuid4().hex[:8]}"
    await fs.mkdir(path)
    return path


async def open_uploads(fs: AsyncClient, user: str) -> list[wire.OpenUpload]:
    listing = await fs.rpc.call("GET", "/uploads", reply=wire.UploadList)
    return [u for u in listing.uploads if u.user == user]


@pytest.mark.asyncio
async def test_each_file_gets_its_status_in_few_commit_requests(
    fs: AsyncClient, shared_cluster: LocalCluster, top: str
) -> None:
    files = {f"{top}/f{i}": os.urandom(i * 37) for i in range(200)}  # the first one empty
    count = Requests(shared_cluster)
    results = await fs.write_many(files)
    moved = count.moved()
    for path, data in files.items():
        status = results[path]
        assert isinstance(status, wire.FileStatus), status
        assert (status.path, status.size, status.type) == (path, len(data), "file")
    commits = moved["/uploads/{id}/commit"] + moved["/uploads/commit-many"]
    # one request per file without batches; how many batches depends on timing
    assert moved["/uploads/commit-many"] >= 1 and commits <= len(files) // 2, moved
    for path, data in files.items():
        assert await fs.read_bytes(path) == data
    checksum = await fs.checksum(f"{top}/f7")  # recorded at commit, as for one file
    assert checksum.sha256 == hashlib.sha256(files[f"{top}/f7"]).hexdigest()


@pytest.mark.asyncio
async def test_a_refused_file_fails_alone_and_leaves_nothing(
    fs: AsyncClient, shared_cluster: LocalCluster, top: str
) -> None:
    await fs.write_bytes(f"{top}/kept", b"old content")
    await fs.write_bytes(f"{top}/plain", b"a file")
    await fs.mkdir(f"{top}/dir")
    good = {f"{top}/good{i}": os.urandom(100 + i) for i in range(40)}
    bad = {
        f"{top}/kept": b"new content",  # exists, and overwrite is off
        f"{top}/dir": b"x",  # a directory
        f"{top}/plain/below": b"x",  # below a file
        f"{top}/missing/f": b"x",  # no such directory
        f"{top}/bad\x07name": b"x",  # not a valid name
    }
    files = dict(good)
    for i, (path, data) in enumerate(bad.items()):  # among the good ones, not after them
        files[path] = data
        files[f"{top}/late{i}"] = good[f"{top}/good{i}"]
    count = Requests(shared_cluster)
    results = await fs.write_many(files, overwrite=False)
    single = count.moved()["/uploads/{id}/commit"]
    # The batches held the refused files: a batch refused whole would be sent again one file at
    # a time (about all 45 alone). How many go alone otherwise depends on timing (a commit that
    # finds none under way goes at once): a handful, more on a loaded machine.
    assert single <= len(files) // 2, single
    assert isinstance(results[f"{top}/kept"], errors.AlreadyExists)
    assert isinstance(results[f"{top}/dir"], errors.IsADirectory)
    assert isinstance(results[f"{top}/plain/below"], errors.NotADirectory)
    assert isinstance(results[f"{top}/missing/f"], errors.NotFound)
    assert isinstance(results[f"{top}/bad\x07name"], errors.InvalidPath)
    for path, data in files.items():
        if path not in bad:
            assert isinstance(results[path], wire.FileStatus), (path, results[path])
            assert await fs.read_bytes(path) == data
    assert await fs.read_bytes(f"{top}/kept") == b"old content"
    assert not await fs.exists(f"{top}/missing")
    names = {e.name for e in await fs.ls(top)}
    assert names == {"kept", "plain", "dir", *(p.rsplit("/", 1)[1] for p in files if p not in bad)}
    await fs.transfer.close()  # hands back the leases it holds ahead
    assert await open_uploads(fs, "admin") == []  # refused files' uploads were closed too


@pytest.mark.asyncio
async def test_overwrite_replaces_only_when_asked(fs: AsyncClient, top: str) -> None:
    old = {f"{top}/f{i}": b"old %d" % i for i in range(30)}
    await fs.write_many(old)
    new = {path: b"new " + data for path, data in old.items()}
    refused = await fs.write_many(new, overwrite=False)
    assert all(isinstance(r, errors.AlreadyExists) for r in refused.values()), refused
    assert all([await fs.read_bytes(p) == d for p, d in old.items()])
    replaced = await fs.write_many(new)
    assert all(isinstance(r, wire.FileStatus) for r in replaced.values()), replaced
    assert all([await fs.read_bytes(p) == d for p, d in new.items()])


@pytest.mark.asyncio
async def test_permissions_are_checked_file_by_file(
    fs: AsyncClient, shared_cluster: LocalCluster, top: str
) -> None:
    name = f"u{uuid.uuid4().hex[:6]}"
    token = await fs.add_user(name)
    await fs.write_bytes(f"{top}/admins", b"not yours")
    mine = {f"/user/{name}/f{i}": os.urandom(50) for i in range(30)}
    theirs = {f"{top}/new": b"x", f"{top}/admins": b"y"}  # top is the admin's, 0755
    async with shared_cluster.async_client(token=token) as user:
        results = await user.write_many({**theirs, **mine})
        for path in theirs:
            assert isinstance(results[path], errors.PermissionDenied), results[path]
        for path, data in mine.items():
            assert isinstance(results[path], wire.FileStatus), results[path]
            assert await user.read_bytes(path) == data
    assert await fs.read_bytes(f"{top}/admins") == b"not yours"
    assert not await fs.exists(f"{top}/new")
    assert await open_uploads(fs, name) == []  # its client closed: nothing left open


@pytest.mark.asyncio
async def test_a_data_node_that_dies_midway_loses_no_file(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(3)
    files = {f"/tmp/f{i}": os.urandom(2000) for i in range(400)}
    async with cluster.async_client() as fs:
        writing = asyncio.ensure_future(fs.write_many(files, concurrency=16))
        while len(await fs.ls("/tmp")) < 40:  # noqa: ASYNC110 (a file count: nothing to await)
            await asyncio.sleep(0.01)
        cluster.datanodes[0].kill()
        results = await writing
        assert not writing.cancelled() and len(await fs.ls("/tmp")) == len(files)
        for path, data in files.items():
            assert isinstance(results[path], wire.FileStatus), results[path]
            assert await fs.read_bytes(path) == data


@pytest.mark.asyncio
async def test_a_batch_whose_answer_is_lost_is_applied_once(
    cluster_factory: ClusterFactory,
) -> None:
    """The client sends the batch again under the same request id: the name node answers it
    as the first time. Were it applied again, its leases would be gone and the files, written
    anew, would exist already (overwrite is off)."""
    cluster = cluster_factory(2)
    files = {f"/tmp/once{i}": os.urandom(300) for i in range(30)}
    async with through_proxy(cluster, alone=True) as (proxy, fs):
        proxy.armed = b"POST /v1/uploads/commit-many"
        results = await fs.write_many(files, overwrite=False)
        assert proxy.dropped == 1
        for path, data in files.items():
            assert isinstance(results[path], wire.FileStatus), results[path]
            assert await fs.read_bytes(path) == data


@pytest.mark.asyncio
async def test_clients_of_one_user_share_its_open_uploads(
    cluster_factory: ClusterFactory,
) -> None:
    """Each client keeps leases ahead, growing its batch to 64 as it writes: several clients of
    one user could hold all the uploads it may have open, and then the next fetch failed
    (``LimitExceeded``). Now a batch takes at most half the room left, and a client refused
    waits for the others' commits."""
    cluster = cluster_factory(2, namenode_args=["--max-open-uploads", "8"])
    clients = [cluster.async_client() for _ in range(4)]
    try:

        async def one_by_one(fs: AsyncClient, n: int) -> None:
            for i in range(40):
                await fs.write_bytes(f"/tmp/c{n}-{i}", b"%d %d" % (n, i))

        many = {f"/tmp/many{i}": b"%d" % i for i in range(60)}
        await asyncio.gather(
            *(one_by_one(fs, n) for n, fs in enumerate(clients[:3])),
            *(clients[3].write_bytes(path, data) for path, data in many.items()),
        )
        names = {e.name for e in await clients[0].ls("/tmp")}
        assert len(names) == 3 * 40 + len(many)
    finally:
        await asyncio.gather(*(fs.close() for fs in clients))


def block_requests(cluster: LocalCluster) -> list[Counter[str]]:
    """Each data node's block writes so far, by ``METHOD route``."""
    counts = []
    for node in cluster.datanodes:
        seen: Counter[str] = Counter()
        for (name, labels), count in scrape(node.url).items():
            label = dict(labels)
            if name == "pydfs_requests_total" and label.get("route", "").startswith("/v1/blocks"):
                seen[f"{label['method']} {label['route']}"] += int(count)
        counts.append(seen)
    return counts


@pytest.mark.asyncio
async def test_small_blocks_go_to_each_data_node_in_few_requests(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(2)
    files = {f"/tmp/f{i}": os.urandom(i % 3000) for i in range(300)}
    async with cluster.async_client() as fs:
        results = await fs.write_many(files)
        assert all(isinstance(r, wire.FileStatus) for r in results.values()), results
        for node in block_requests(cluster):
            writes = node["PUT /v1/blocks/{id}"] + node["POST /v1/blocks"]
            # one request per block without batches; waves of 64 need about ten
            assert node["POST /v1/blocks"] >= 1 and writes <= len(files) // 4, node
        for path, data in files.items():
            assert await fs.read_bytes(path) == data
            blocks = (await fs.info(path)).blocks
            assert [len(b.nodes) for b in blocks] == ([2] if data else [])


@pytest.mark.asyncio
async def test_a_batch_admits_each_block_by_its_own_token(cluster_factory: ClusterFactory) -> None:
    """A client that lies (a token for one block sent with another, a CRC that does not match
    its bytes) gets only those blocks refused; the honest ones in the same batch are stored."""
    cluster = cluster_factory(2)
    async with cluster.async_client() as fs:
        batch = await fs.rpc.call(
            "POST", "/uploads/batch", wire.UploadBatchRequest(3), reply=wire.UploadBatch
        )
        a, b, c = (u.block for u in batch.uploads)

        def frames(data: bytes, crc: int | None = None) -> bytes:
            good = checksum.crc(data)
            return (
                wire.FRAME.pack(len(data), good if crc is None else crc)
                + data
                + (wire.FRAME.pack(0, good))
            )

        body = wire.pack_blocks(
            [
                (a.block_id, a.token, frames(b"honest")),
                (b.block_id, a.token, frames(b"not mine")),
                (c.block_id, c.token, frames(b"rotten", crc=7)),
            ]
        )
        node = a.targets[0]
        route, head = f"/blocks?block={a.block_id}", {wire.H_BLOCK_TOKEN: a.token}
        # admitted on its head, by the token of the block it names first, before the body
        with pytest.raises(errors.Unauthenticated):
            await fs.links.request(node.url, "POST", route, body)
        with pytest.raises(errors.Unauthenticated):
            await fs.links.request(node.url, "POST", route, body, {wire.H_BLOCK_TOKEN: b.token})
        answer = await fs.links.request(node.url, "POST", route, body, head)
        reply = wire.decode(answer.body, wire.BlockBatchReply)
        assert [r.error.code if r.error else None for r in reply.results] == [
            None,
            "unauthenticated",
            "checksum_mismatch",
        ]
        assert reply.results[0].stored is not None
        assert reply.results[0].stored.nodes == [node.id]
        headers = {wire.H_BLOCK_TOKEN: a.token}  # a write token reads back what it wrote
        got = await fs.links.request(node.url, "GET", f"/blocks/{a.block_id}", None, headers)
        assert got.body == b"honest"
        for refused in (b, c):
            headers = {wire.H_BLOCK_TOKEN: refused.token}
            with pytest.raises(errors.NotFound):
                await fs.links.request(
                    node.url, "GET", f"/blocks/{refused.block_id}", None, headers
                )
        too_big = b"\0" * (wire.MAX_BATCH_BODY + 1)
        with pytest.raises(errors.ProtocolError, match="too large"):
            await fs.links.request(node.url, "POST", route, too_big, head)


@pytest.mark.asyncio
async def test_an_io_object_whose_read_is_a_coroutine_is_read_as_one(
    fs: AsyncClient, top: str
) -> None:
    """fsspec's async files derive from ``io.IOBase`` and read with ``await``."""
    from tests.unit.test_lease_keeper import AsyncFile

    data = os.urandom(100_000)
    status = await fs.write_stream(f"{top}/async", AsyncFile(data))  # type: ignore[arg-type]
    assert status.size == len(data)
    assert await fs.read_bytes(f"{top}/async") == data


@pytest.mark.asyncio
async def test_large_files_wait_for_room_among_the_users_open_uploads(
    cluster_factory: ClusterFactory,
) -> None:
    """A file over a batch lease's size opens an upload of its own: with the user's uploads all
    open, it waits for one to end, as small files do, rather than fail."""
    cluster = cluster_factory(2, namenode_args=["--max-open-uploads", "2"])
    files = {f"/tmp/big{i}": os.urandom(1_100_000 + i) for i in range(6)}
    async with cluster.async_client() as fs:
        results = await asyncio.gather(*(fs.write_bytes(p, d) for p, d in files.items()))
        assert [r.size for r in results] == [len(d) for d in files.values()]
        for path, data in files.items():
            assert await fs.read_bytes(path) == data
