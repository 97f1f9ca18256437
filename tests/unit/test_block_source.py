"""How the client frames a block: one body when its first chunk is all of it, a stream of
frames otherwise, with every byte of the source in order and every CRC right."""

from __future__ import annotations

import asyncio
import os

import pytest

from pydfs import checksum, wire
from pydfs.client.blocks import BlockSource, _read_full, first_read

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
