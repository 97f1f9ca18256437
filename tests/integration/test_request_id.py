"""Request ids, against real nodes: every answer, from the fast path or from aiohttp, carries the
client's ``X-Request-Id`` (or one made up for it), error bodies name it, and a line a server
logs while answering a request shows it."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest

from pydfs import checksum, tokens, wire
from pydfs.cluster import LocalCluster
from tests.conftest import node_id
from tests.integration.test_fastpath import Raw


@pytest.fixture
def raw(shared_cluster: LocalCluster) -> Raw:
    return Raw(shared_cluster.url, shared_cluster.admin_token)


def test_answers_echo_the_id_and_errors_name_it(raw: Raw) -> None:
    raw.send(
        raw.request("GET", "/v1/fs/stat?path=/no/such", X_Request_Id="fast-1")
        + raw.request("GET", "/metrics", X_Request_Id="aiohttp-1")  # handed to aiohttp
        + raw.request("GET", "/v1/fs/stat?path=/no/such", X_Request_Id="aiohttp-2")
    )
    fast, page, slow = raw.answer(), raw.answer(), raw.answer()
    raw.close()
    assert fast.fast and not page.fast and not slow.fast
    assert page.headers["x-request-id"] == "aiohttp-1"
    for answer, rid in ((fast, "fast-1"), (slow, "aiohttp-2")):
        assert answer.status == 404 and answer.headers["x-request-id"] == rid
        assert answer.json()["request_id"] == rid


def test_a_request_without_a_sane_id_gets_a_new_one(raw: Raw) -> None:
    raw.send(
        raw.request("GET", "/v1/fs/stat?path=/")
        + raw.request("GET", "/v1/fs/stat?path=/")
        + raw.request("GET", "/v1/fs/stat?path=/", X_Request_Id="x" * 65)
        + raw.request("GET", "/v1/fs/stat?path=/", X_Request_Id='a "quoted" id')
    )
    ids = [raw.answer().headers["x-request-id"] for _ in range(4)]
    raw.close()
    assert len(set(ids)) == 4 and all(0 < len(rid) <= 64 and " " not in rid for rid in ids)


def _log_line(process: object, text: str, within: float = 5.0) -> str:
    path = process.log_path  # type: ignore[attr-defined]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for line in path.read_text().splitlines():
            if text in line:
                return str(line)
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged by {path}")


@pytest.mark.parametrize("size", [100, wire.CHUNK_SIZE + 1], ids=["fast path", "aiohttp"])
def test_a_data_node_logs_with_the_id_of_the_request(
    shared_cluster: LocalCluster, size: int
) -> None:
    """A write whose pipeline's next node cannot be reached: the warning names the request."""
    process = shared_cluster.datanodes[0]
    secret = (shared_cluster.namenode.data_dir / "cluster.secret").read_text().strip().encode()
    block_id = hashlib.md5(os.urandom(16)).hexdigest()
    targets = [(node_id(process), process.url), ("gone", "http://127.0.0.1:9")]
    token = tokens.block_token(secret, block_id, "w", 600, targets)
    data = os.urandom(size)
    body = b"".join(
        wire.FRAME.pack(len(piece), checksum.crc(piece)) + piece
        for piece in (data[i : i + wire.CHUNK_SIZE] for i in range(0, size, wire.CHUNK_SIZE))
    ) + wire.FRAME.pack(0, checksum.crc(data))
    rid = f"trace-{block_id[:8]}"
    conn = Raw(process.url, "unused")
    conn.send(
        conn.request(
            "PUT",
            f"/v1/blocks/{block_id}",
            body,
            X_Pydfs_Block_Token=token,
            X_Pydfs_Pipeline="1",
            X_Request_Id=rid,
        )
    )
    stored = conn.answer()
    conn.close()
    assert stored.fast == (size < wire.CHUNK_SIZE)
    assert stored.status == 200 and json.loads(stored.body)["nodes"] == [node_id(process)]
    assert stored.headers["x-request-id"] == rid
    assert f"[{rid}]: pipeline for block {block_id} lost" in _log_line(process, block_id)
