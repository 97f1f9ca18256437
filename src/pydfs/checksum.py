"""CRC32C per block and per chunk, and the checksum trailer at the end of every block file.

A block has one CRC32C over all its bytes (kept by the name node, shown by ``file_info``) and one
CRC32C per ``chunk_size`` bytes, so that a ranged read is verified without reading the whole
block. A data node keeps a block as one file: the block's bytes from offset 0 (so ranges go out
with sendfile as they are), then a trailer, versioned and all little-endian::

    n chunk CRCs, u32 each
    footer, 32 bytes: magic "PDBT" | version u16 | reserved u16 | chunk_size u32 | size u64
                      | crc u32 | n u32 | footer crc u32 (CRC32C of the 28 bytes before it)

A reader takes the footer from the last 32 bytes, and the file must be exactly
``size + 4 * n + 32`` bytes with ``n = ceil(size / chunk_size)``: a truncated or grown file, or a
garbled footer, does not validate, and is a corrupt replica (a garbled chunk CRC shows when its
chunk is read). Version 1 kept the same fields in a separate
``<id>.crc`` sidecar (magic "PDCK", the header first); ``decode_sidecar`` reads one only to
upgrade a data directory.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from pydfs.errors import ChecksumMismatch, ProtocolError

TRAILER_VERSION = 2
_MAGIC = b"PDBT"
_FIELDS = struct.Struct("<4sHHIQII")  # the footer without its CRC, and the version 1 header
FOOTER_SIZE = _FIELDS.size + 4


def crc(data: bytes | memoryview, value: int = 0) -> int:
    return int(_crc32c()(data, value))


@functools.cache
def _crc32c() -> Callable[[bytes | memoryview, int], int]:
    """The crc32c package, imported on first use: its import (which reads package metadata)
    costs a one-shot command that never touches block data more than the command itself."""
    from crc32c import crc32c

    return crc32c


def chunk_count(size: int, chunk_size: int) -> int:
    return -(-size // chunk_size)


@dataclass(frozen=True, slots=True)
class BlockChecksums:
    chunk_size: int
    size: int
    crc: int
    chunk_crcs: list[int]

    def trailer(self) -> bytes:
        """What follows the block's bytes in its file: the chunk CRCs, then the footer."""
        n = len(self.chunk_crcs)
        footer = _FIELDS.pack(_MAGIC, TRAILER_VERSION, 0, self.chunk_size, self.size, self.crc, n)
        return struct.pack(f"<{n}I{len(footer)}sI", *self.chunk_crcs, footer, crc(footer))

    @classmethod
    def read(cls, fd: int) -> BlockChecksums:
        """The checksums of the block file open as *fd*, from its trailer; raises
        ChecksumMismatch if the trailer does not validate (the replica is corrupt)."""
        file_size = os.fstat(fd).st_size
        if file_size < FOOTER_SIZE:
            raise ChecksumMismatch("block file too short for its checksum trailer")
        footer = os.pread(fd, FOOTER_SIZE, file_size - FOOTER_SIZE)
        if len(footer) != FOOTER_SIZE or crc(footer[:-4]) != int.from_bytes(footer[-4:], "little"):
            raise ChecksumMismatch("block file's checksum footer is damaged or missing")
        magic, version, reserved, chunk_size, size, block_crc, n = _FIELDS.unpack_from(footer)
        if magic != _MAGIC or version != TRAILER_VERSION or reserved != 0:
            raise ChecksumMismatch(f"unknown checksum trailer (magic {magic!r}, version {version})")
        if chunk_size <= 0 or n != chunk_count(size, chunk_size):
            raise ChecksumMismatch("checksum trailer's chunk count does not fit its size")
        if file_size != size + 4 * n + FOOTER_SIZE:
            raise ChecksumMismatch("block file's length does not match its checksum trailer")
        raw = os.pread(fd, 4 * n, size)
        if len(raw) != 4 * n:
            raise ChecksumMismatch("block file shrank while its checksums were read")
        return cls(chunk_size, size, block_crc, list(struct.unpack(f"<{n}I", raw)))

    @classmethod
    def decode_sidecar(cls, raw: bytes) -> BlockChecksums:
        """A version 1 sidecar (the footer's fields first, then the chunk CRCs, no footer CRC)."""
        if len(raw) < _FIELDS.size:
            raise ProtocolError("checksum sidecar truncated")
        magic, version, _, chunk_size, size, block_crc, n = _FIELDS.unpack_from(raw)
        if magic != b"PDCK" or version != 1:
            raise ProtocolError(f"unknown checksum sidecar (magic {magic!r}, version {version})")
        if len(raw) != _FIELDS.size + 4 * n or chunk_size <= 0:
            raise ProtocolError("checksum sidecar has the wrong length")
        if n != chunk_count(size, chunk_size):
            raise ProtocolError("checksum sidecar's chunk count does not fit its size")
        crcs = list(struct.unpack_from(f"<{n}I", raw, _FIELDS.size))
        return cls(chunk_size, size, block_crc, crcs)

    def chunk_range(self, offset: int, length: int) -> tuple[int, int]:
        """First chunk index and chunk count covering ``[offset, offset + length)``."""
        first = offset // self.chunk_size
        last = max(first, (offset + max(length, 1) - 1) // self.chunk_size)
        return first, min(last + 1, len(self.chunk_crcs)) - first


def pack_crcs(crcs: list[int]) -> str:
    """Chunk CRCs as a compact header value (hex, 8 characters each)."""
    return "".join(f"{c:08x}" for c in crcs)


def unpack_crcs(value: str) -> list[int]:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ProtocolError("malformed chunk checksum header") from None
    if len(raw) * 2 != len(value) or len(raw) % 4:
        raise ProtocolError("malformed chunk checksum header")
    return list(struct.unpack(f">{len(raw) // 4}I", raw))
