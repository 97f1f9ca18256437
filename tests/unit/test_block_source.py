"""How the client frames a block: one body when its first chunk is all of it, a stream of
frames otherwise, with every byte of the source in order and every CRC right."""

from __future__ import annotations

import asyncio
import os

import pytest

from pydfs import checksum, http1, wire
from pydfs.client.blocks import (
    BlockSource,
    _fan_out,
    _pieces,
    _read_full,
    first_read,
    write_blocks,
)
from pydfs.errors import (
    ChecksumMismatch,
    InsufficientNodes,
    InternalError,
    NoSpace,
    ProtocolError,
    Unauthenticated,
    Unavailable,
)

CHUNK = wire.CHUNK_SIZE


def source_of(data: bytes, block_size: int) -> BlockSource:
    pos = 0

    async def read(n: int) -> bytes:
        nonlocal pos
        piece = data[pos : pos + min(n, 1000)]  # a source that hands out small pieces
        pos += len(piece)
        return piece

    first = asyncio.run(_read_full(read, first_read(block_size)))
    return BlockSource(read, first, block_size)


def unframe(body: bytes) -> tuple[list[bytes], int]:
    """The chunks of a framed block, each checked against its frame's CRC, and the closing
    frame's whole-block CRC."""
    chunks = []
    while True:
        length, crc = wire.FRAME.unpack_from(body)
        body = body[wire.FRAME.size :]
        if length == 0:
            assert body == b""
            return chunks, crc
        chunk, body = body[:length], body[length:]
        assert checksum.crc(chunk) == crc
        chunks.append(chunk)


async def streamed(source: BlockSource) -> bytes:
    return b"".join([frame async for frame in source.frames()])


@pytest.mark.parametrize("size", [1, CHUNK - 1, CHUNK])  # an empty file sends no block
def test_a_block_of_at_most_a_chunk_goes_whole(size: int) -> None:
    data = os.urandom(size)
    source = source_of(data, 64 * CHUNK)
    body = source.whole()
    assert body is not None
    chunks, crc = unframe(body)
    assert b"".join(chunks) == data and crc == checksum.crc(data)
    assert (source.size, source.crc) == (size, checksum.crc(data))


@pytest.mark.parametrize("size", [CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 7])
def test_a_longer_block_streams_every_byte_in_chunks(size: int) -> None:
    data = os.urandom(size)
    source = source_of(data, 64 * CHUNK)
    assert source.whole() is None
    chunks, crc = unframe(asyncio.run(streamed(source)))
    assert [len(c) for c in chunks[:-1]] == [CHUNK] * (len(chunks) - 1)
    assert b"".join(chunks) == data and crc == checksum.crc(data)
    assert source.size == size


def test_a_block_stops_at_its_size_and_leaves_the_rest() -> None:
    data = os.urandom(3 * CHUNK)
    source = source_of(data, 2 * CHUNK)
    chunks, _ = unframe(asyncio.run(streamed(source)))
    assert b"".join(chunks) == data[: 2 * CHUNK]
    one = source_of(data, CHUNK)  # a block of exactly one chunk, with more to come
    body = one.whole()
    assert body is not None and unframe(body)[0] == [data[:CHUNK]]


class FakeLinks:
    """``rpc.Links`` answering as data nodes would, or failing for the nodes in *down*."""

    def __init__(self, down=(), lie=(), garbage=(), error=Unavailable) -> None:  # type: ignore[no-untyped-def]
        self.down, self.lie, self.garbage = set(down), set(lie), set(garbage)
        self.error = error
        self.sent: list[tuple[str, str, bytes | None, dict[str, str]]] = []

    async def request(self, url, method, route, body=None, headers=None):  # type: ignore[no-untyped-def]
        self.sent.append((url, method, body, dict(headers or {})))
        await asyncio.sleep(0)
        if url in self.down:
            raise self.error(f"{url} is down")
        if url in self.garbage:
            return http1.Answer(200, b"<html>a proxy's page</html>", {})
        chunks, crc = unframe(body)
        size = sum(map(len, chunks)) + (1 if url in self.lie else 0)
        stored = wire.StoredBlock(route.rsplit("/", 1)[1], size, crc, [url[-1]])
        return http1.Answer(200, wire.encode(stored), {})


def fan_out(links: FakeLinks, data: bytes) -> wire.StoredBlock:
    grant = wire.BlockGrant("b" * 32, [wire.NodeRef(n, f"http://dn{n}") for n in "12"], "tok")
    source = source_of(data, 4 * CHUNK)
    return asyncio.run(_fan_out(links, grant, source))  # type: ignore[arg-type]


def test_a_one_chunk_block_goes_to_every_node_at_once_without_a_pipeline() -> None:
    links = FakeLinks()
    stored = fan_out(links, b"small file")
    assert [url for url, *_ in links.sent] == ["http://dn1", "http://dn2"]
    assert all(m == "PUT" and wire.H_PIPELINE not in h for _, m, _, h in links.sent)
    assert all(h[wire.H_BLOCK_TOKEN] == "tok" for *_, h in links.sent)
    assert stored == wire.StoredBlock("b" * 32, 10, checksum.crc(b"small file"), ["1", "2"])


def test_a_fan_out_counts_the_nodes_that_stored_it_and_fails_only_if_none_did() -> None:
    assert fan_out(FakeLinks(down={"http://dn1"}), b"x").nodes == ["2"]
    assert fan_out(FakeLinks(lie={"http://dn1"}), b"x").nodes == ["2"]  # wrong bytes: not stored
    assert fan_out(FakeLinks(garbage={"http://dn2"}), b"x").nodes == ["1"]
    with pytest.raises(Unavailable, match="dn1"):
        fan_out(FakeLinks(down={"http://dn1", "http://dn2"}), b"x")
    with pytest.raises(ChecksumMismatch):
        fan_out(FakeLinks(lie={"http://dn1", "http://dn2"}), b"x")


def test_a_block_no_node_stored_goes_to_nodes_that_avoid_all_of_them() -> None:
    allocate = granting("12", "34")
    stored = write_through(FakeLinks(down={"http://dn1", "http://dn2"}), allocate, b"small file")
    assert allocate.excluded == [[], ["1", "2"]]
    assert [b.nodes for b in stored] == [["3", "4"]]


def write_through(links, allocate, data: bytes, block_size: int = 4 * CHUNK, *, pipe=False):  # type: ignore[no-untyped-def]
    """``write_blocks`` of *data* over *links*, rewinding as a local file does (a *pipe*
    cannot)."""
    left = bytearray(data)

    async def read(n: int) -> bytes:
        piece = bytes(left[:n])
        del left[:n]
        return piece

    async def rewind(offset: int) -> bool:
        left[:] = data[offset:]
        return not pipe

    grant = wire.UploadGrant("u", "", 2, block_size, None)  # type: ignore[arg-type]
    return asyncio.run(write_blocks(None, read, grant, allocate, rewind, 5.0, links))  # type: ignore[arg-type]


def granting(*pairs: str, then: Exception | None = None):  # type: ignore[no-untyped-def]
    """An ``allocate`` granting blocks on the node pairs given, in turn, then raising *then*."""
    excluded: list[list[str]] = []

    async def allocate(exclude: list[str]) -> wire.BlockGrant:
        excluded.append(list(exclude))
        if len(excluded) > len(pairs):
            assert then is not None
            raise then
        nodes = pairs[len(excluded) - 1]
        return wire.BlockGrant(
            f"{len(excluded):032x}", [wire.NodeRef(n, f"http://dn{n}") for n in nodes], "t"
        )

    allocate.excluded = excluded  # type: ignore[attr-defined]
    return allocate


@pytest.mark.parametrize("error", [NoSpace, InternalError])
def test_a_block_refused_for_room_or_by_a_failing_node_goes_to_other_nodes(error) -> None:  # type: ignore[no-untyped-def]
    """A node that filled since it last told the name node, or whose disk failed (a defect
    too): the block is nowhere acknowledged, so it goes to nodes that avoid them."""
    allocate = granting("12", "34")
    links = FakeLinks(down={"http://dn1", "http://dn2"}, error=error)
    stored = write_through(links, allocate, b"small file")
    assert allocate.excluded == [[], ["1", "2"]]
    assert [b.nodes for b in stored] == [["3", "4"]]


def test_a_small_block_from_a_pipe_goes_to_other_nodes_too() -> None:
    """A block of one chunk is all read already: it needs no rewind to be sent again."""
    allocate = granting("12", "34")
    links = FakeLinks(down={"http://dn1", "http://dn2"})
    stored = write_through(links, allocate, b"small file", pipe=True)
    assert [b.nodes for b in stored] == [["3", "4"]]
    sent = [body for url, _, body, _ in links.sent if url == "http://dn3"]
    assert unframe(sent[0])[0] == [b"small file"]


def test_when_no_node_is_left_the_last_nodes_own_failure_is_told() -> None:
    """A cluster whose nodes are all full says so, not "no live data node"."""
    allocate = granting("12", then=InsufficientNodes("no live data node to write to"))
    links = FakeLinks(down={"http://dn1", "http://dn2"}, error=NoSpace)
    with pytest.raises(NoSpace, match="dn1"):
        write_through(links, allocate, b"small file")
    assert allocate.excluded == [[], ["1", "2"]]  # it asked for other nodes first


def test_the_name_nodes_own_refusal_is_told_as_it_is() -> None:
    """Nodes left, none with room: the name node's ``NoSpace`` says more than the node's."""
    allocate = granting("12", then=NoSpace("no live data node has room"))
    links = FakeLinks(down={"http://dn1", "http://dn2"})
    with pytest.raises(NoSpace, match="has room"):
        write_through(links, allocate, b"small file")


def test_a_failure_of_an_earlier_block_is_not_told_for_a_later_one() -> None:
    """Block 1 went elsewhere after its first nodes failed; block 2 then finds no node: that is
    what the writer is told."""
    allocate = granting("12", "34", then=InsufficientNodes("no live data node to write to"))
    links = FakeLinks(down={"http://dn1", "http://dn2"}, error=InternalError)
    with pytest.raises(InsufficientNodes):
        write_through(links, allocate, os.urandom(CHUNK + 1), block_size=CHUNK)


def test_a_block_refused_for_its_token_goes_once_more_under_a_fresh_one() -> None:
    """No node is to blame: the same nodes may be granted again, and a second refusal ends it."""
    allocate = granting("12", "12")
    links = FakeLinks()
    calls = 0
    answer = links.request

    async def request(url, method, route, body=None, headers=None):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls <= 2:  # both nodes of the first try
            raise Unauthenticated("token expired")
        return await answer(url, method, route, body, headers)

    links.request = request  # type: ignore[method-assign]
    stored = write_through(links, allocate, b"small file", pipe=True)
    assert allocate.excluded == [[], []] and [b.nodes for b in stored] == [["1", "2"]]
    always = FakeLinks(down={"http://dn1", "http://dn2"}, error=Unauthenticated)
    with pytest.raises(Unauthenticated):
        write_through(always, granting("12", "12", "12"), b"small file")


# --- what a data node says of the range it answers with --------------------------------------


def range_answer(
    data: bytes, start: int, chunks: int, *, offset: int | None = None
) -> tuple[dict[str, str], bytes]:
    """A data node's answer to a range read of *data* (one block): *chunks* whole chunks from
    byte *start*, said to start at *offset* (where they do, unless a node lies)."""
    body = data[start : start + chunks * CHUNK]
    crcs = [checksum.crc(body[i : i + CHUNK]) for i in range(0, len(body), CHUNK)]
    headers = {
        wire.H_BLOCK_SIZE.lower(): str(len(data)),
        wire.H_BLOCK_CRC.lower(): str(checksum.crc(data)),
        wire.H_CHUNK_SIZE.lower(): str(CHUNK),
        wire.H_OFFSET.lower(): str(start if offset is None else offset),
        wire.H_CHUNK_CRCS.lower(): checksum.pack_crcs(crcs),
    }
    return headers, body


async def pieces_of(data: bytes, headers: dict[str, str], body: bytes, pos: int, end: int) -> bytes:
    block = wire.BlockInfo("b" * 32, len(data), checksum.crc(data))
    node = wire.NodeRef("dn-1", "http://127.0.0.1:1")
    got = [p async for p, _ in _pieces(node, block, headers, wire.body_reader(body), pos, end)]
    return b"".join(got)


def test_a_range_comes_out_at_its_offset() -> None:
    data = os.urandom(3 * CHUNK + 100)
    headers, body = range_answer(data, CHUNK, 2)
    pos, end = CHUNK + 10, 3 * CHUNK - 5
    assert asyncio.run(pieces_of(data, headers, body, pos, end)) == data[pos:end]


def test_chunks_said_to_start_after_the_byte_asked_for_are_refused() -> None:
    # A node that answers with the chunk after the one asked for, and says so: its bytes, all
    # good, would come out at the offset asked for.
    data = os.urandom(3 * CHUNK)
    headers, body = range_answer(data, 2 * CHUNK, 1)
    with pytest.raises(ProtocolError, match="answered from byte"):
        asyncio.run(pieces_of(data, headers, body, CHUNK, CHUNK + 100))


@pytest.mark.parametrize("offset", [CHUNK // 2, -CHUNK])
def test_chunks_said_to_start_off_a_chunk_boundary_or_before_the_block_are_refused(
    offset: int,
) -> None:
    data = os.urandom(2 * CHUNK)
    headers, body = range_answer(data, 0, 1, offset=offset)
    with pytest.raises(ProtocolError, match="answered from byte"):
        asyncio.run(pieces_of(data, headers, body, CHUNK // 2 + 1, CHUNK // 2 + 100))


def test_an_answer_with_none_of_the_range_is_refused_rather_than_asked_again() -> None:
    data = os.urandom(2 * CHUNK)
    headers, body = range_answer(data, CHUNK, 0)  # no chunk at all
    with pytest.raises(ProtocolError, match="none of the range"):
        asyncio.run(pieces_of(data, headers, body, CHUNK, CHUNK + 100))


def test_chunks_that_match_their_table_but_not_the_block_are_refused() -> None:
    # The bytes and the CRC table rewritten together, the trailer still naming the block.
    real, other = os.urandom(CHUNK + 100), os.urandom(CHUNK + 100)
    headers, body = range_answer(other, 0, 2)
    headers[wire.H_BLOCK_CRC.lower()] = str(checksum.crc(real))
    block = wire.BlockInfo("b" * 32, len(real), checksum.crc(real))
    node = wire.NodeRef("dn-1", "http://127.0.0.1:1")

    async def read_all() -> bytes:
        pieces = _pieces(node, block, headers, wire.body_reader(body), 0, len(real))
        return b"".join([p async for p, _ in pieces])

    with pytest.raises(ChecksumMismatch, match="other bytes"):
        asyncio.run(read_all())
