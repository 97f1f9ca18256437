"""A data node's fast path, over raw sockets against a real data node: one-chunk block writes and
reads of at most a chunk are answered by it (no ``Server`` header, which aiohttp always sends);
anything else goes to aiohttp with the bytes already read, and both agree on answers, errors and
metrics."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from pydfs import checksum, tokens, wire
from pydfs.cluster import LocalCluster
from tests.conftest import block_bytes, node_id
from tests.integration.test_fastpath import Answer, Raw
from tests.integration.test_metrics import scrape, value


class Node:
    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.process = cluster.datanodes[0]
        self.secret = (cluster.namenode.data_dir / "cluster.secret").read_text().strip().encode()
        self.raw = Raw(self.process.url, "not used by data nodes")

    def put(self, block_id: str, data: bytes, token: str | None = None) -> Answer:
        here = [(node_id(self.process), self.process.url)]
        token = token or tokens.block_token(self.secret, block_id, "w", 600, here)
        body = b"".join(
            wire.FRAME.pack(
                len(data[i : i + wire.CHUNK_SIZE]), checksum.crc(data[i : i + wire.CHUNK_SIZE])
            )
            + data[i : i + wire.CHUNK_SIZE]
            for i in range(0, len(data), wire.CHUNK_SIZE)
        )
        body += wire.FRAME.pack(0, checksum.crc(data))
        self.raw.send(
            self.raw.request("PUT", f"/v1/blocks/{block_id}", body, X_Pydfs_Block_Token=token)
        )
        return self.raw.answer()

    def get(self, block_id: str, query: str = "", token: str | None = None, **extra: str) -> Answer:
        token = token or tokens.block_token(self.secret, block_id, "r", 600)
        target = f"/v1/blocks/{block_id}" + (f"?{query}" if query else "")
        self.raw.send(self.raw.request("GET", target, X_Pydfs_Block_Token=token, **extra))
        return self.raw.answer()


@pytest.fixture
def node(shared_cluster: LocalCluster) -> Iterator[Node]:
    n = Node(shared_cluster)
    yield n
    n.raw.close()


def fresh(node: Node) -> str:
    """A block id granted to an open upload that names *node*: what is written under it stays
    (a block no upload was granted is deleted by the data node's next report or heartbeat)."""

    async def grant() -> str:
        async with node.cluster.async_client() as fs:
            upload = await fs.transfer.start(f"/tmp/raw-{os.urandom(8).hex()}", replication=2)
        assert node_id(node.process) in [t.id for t in upload.block.targets]
        return upload.block.block_id

    return asyncio.run(grant())


def test_small_blocks_are_written_and_read_on_the_fast_path_as_aiohttp_would(node: Node) -> None:
    block_id, data = fresh(node), os.urandom(4096)
    stored = node.put(block_id, data)
    assert stored.status == 200 and stored.fast
    assert stored.json() == {
        "block_id": block_id,
        "size": 4096,
        "crc": checksum.crc(data),
        "nodes": [node_id(node.process)],
    }
    assert block_bytes(node.process, block_id) == data  # durable, under its name
    small = node.get(block_id, "offset=100&length=1000")
    assert small.status == 200 and small.fast
    assert small.body == data  # the whole chunk that covers the range, to be verified
    assert small.headers["content-type"] == "application/octet-stream"
    # Without a length the read is aiohttp's, on the same connection, and says the same.
    whole = node.get(block_id)
    assert whole.status == 200 and not whole.fast
    assert whole.body == small.body
    for name in (wire.H_BLOCK_SIZE, wire.H_CHUNK_SIZE, wire.H_OFFSET, wire.H_CHUNK_CRCS):
        assert small.headers[name.lower()] == whole.headers[name.lower()], name
    assert small.headers[wire.H_CHUNK_CRCS.lower()] == checksum.pack_crcs([checksum.crc(data)])


def test_larger_blocks_and_reads_go_to_aiohttp(node: Node) -> None:
    block_id, data = fresh(node), os.urandom(wire.CHUNK_SIZE + 1)
    stored = node.put(block_id, data)  # two chunks: streamed
    assert stored.status == 200 and not stored.fast
    assert stored.json()["size"] == wire.CHUNK_SIZE + 1
    assert block_bytes(node.process, block_id) == data


def test_errors_on_the_fast_path_are_aiohttp_s(shared_cluster: LocalCluster, node: Node) -> None:
    missing = fresh(node)
    fast = node.get(missing, "offset=0&length=10", X_Request_Id="probe-1")
    other = Node(shared_cluster)
    slow = other.get(missing, X_Request_Id="probe-1")
    other.raw.close()
    assert fast.fast and not slow.fast
    assert (
        (fast.status, fast.json())
        == (slow.status, slow.json())
        == (
            404,
            {"code": "not_found", "message": fast.json()["message"], "request_id": "probe-1"},
        )
    )
    assert fast.headers["x-request-id"] == slow.headers["x-request-id"] == "probe-1"
    block_id, data = fresh(node), b"small"
    assert node.put(block_id, data).status == 200
    again = node.put(block_id, data)
    assert again.fast and again.status == 400 and "already exists" in str(again.json()["message"])
    forged = tokens.block_token(b"x" * 64, block_id, "r", 600)
    refused = node.get(block_id, "offset=0&length=5", token=forged)
    assert refused.fast and refused.status == 401
    assert node.get(block_id, "offset=0&length=5").body == data  # the connection goes on
    # A refused write's body is never read: the connection closes rather than take it for a
    # request.
    refused = node.put(fresh(node), data, token=tokens.block_token(b"x" * 64, block_id, "w", 600))
    assert refused.fast and refused.status == 401
    assert node.raw.closed()


def test_fast_requests_are_counted(shared_cluster: LocalCluster, node: Node) -> None:
    labels = {"role": "datanode", "route": "/v1/blocks/{id}"}
    before = scrape(node.process.url)
    block_id = fresh(node)
    assert node.put(block_id, b"counted").fast
    for _ in range(3):
        assert node.get(block_id, "offset=0&length=7").fast
    after = scrape(node.process.url)
    for method, n in (("PUT", 1), ("GET", 3)):
        key = {**labels, "method": method, "status": "200"}
        assert (
            value(after, "pydfs_requests_total", **key)
            == value(before, "pydfs_requests_total", **key) + n
        )
    assert value(after, "pydfs_datanode_block_reads_total") >= 3


def test_queries_and_tokens_it_cannot_read_get_a_clear_answer(node: Node) -> None:
    """Never a dropped connection: a length that is no plain number goes to aiohttp's route
    (400), a token of other than ASCII is refused like any malformed one."""
    block_id = fresh(node)
    assert node.put(block_id, b"data").status == 200
    for length in ("%C2%B2", "9" * 5000, "abc", "-1"):
        answer = node.get(block_id, f"offset=0&length={length}")
        assert answer.status == 400, length
        assert answer.json()["code"] == "invalid_argument", length
    other = Node.__new__(Node)
    other.process, other.secret = node.process, node.secret
    other.raw = Raw(node.process.url, "")
    try:
        refused = other.get(block_id, "offset=0&length=4", token="r.1.\u00e9")
        assert refused.fast and refused.status == 401
        assert other.get(block_id, "offset=0&length=4").body == b"data"
    finally:
        other.raw.close()
