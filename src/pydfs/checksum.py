"""CRC32C per block and per chunk, and the checksum trailer at the end of every block file.

A block has one CRC32C over all its bytes (kept by the name node, shown by ``file_info``) and one
CRC32C per ``chunk_size`` bytes, so that a ranged read is verified without reading the whole
block. A data node keeps a block as one file: the block's bytes from offset 0 (so ranges go out
with sendfile as they are), then a trailer, versioned and all little-endian::

    n chunk CRCs, u32 each
    footer, 48 bytes: magic "PDBT" | version u16 | reserved u16 | chunk_size u32 | size u64
                      | crc u32 | n u32 | block id, 16 bytes
                      | footer crc u32 (CRC32C of the 44 bytes before it)

A reader takes the footer from the last 48 bytes, and the file must be exactly
``size + 4 * n + 48`` bytes with ``n = ceil(size / chunk_size)``: a truncated or grown file, or a
garbled footer, does not validate, and is a corrupt replica (a garbled chunk CRC shows when its
chunk is read). The footer names its block, so a block file copied or renamed over another
block's is refused too (``BlockStore.open_block``). Version 2 had the same footer without the
block id (32 bytes; ``read_v2`` reads one only to upgrade a data directory); version 1 kept its
fields in a separate ``<id>.crc`` sidecar (magic "PDCK", the header first; ``decode_sidecar``).
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from pydfs.errors import ChecksumMismatch, ProtocolError

TRAILER_VERSION = 3
_MAGIC = b"PDBT"
_FIELDS = struct.Struct("<4sHHIQII")  # the version 2 footer without its CRC; the v1 header
_FOOTER = struct.Struct("<4sHHIQII16s")  # the footer without its CRC
FOOTER_SIZE = _FOOTER.size + 4
V2_FOOTER_SIZE = _FIELDS.size + 4


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
    block_id: str
    chunk_size: int
    size: int
    crc: int
    chunk_crcs: list[int]

    def footer(self) -> bytes:
        fields = _FOOTER.pack(
            _MAGIC,
            TRAILER_VERSION,
            0,
            self.chunk_size,
            self.size,
            self.crc,
            len(self.chunk_crcs),
            bytes.fromhex(self.block_id),
        )
        return fields + crc(fields).to_bytes(4, "little")

    def trailer(self) -> bytes:
        """What follows the block's bytes in its file: the chunk CRCs, then the footer."""
        n = len(self.chunk_crcs)
        return struct.pack(f"<{n}I", *self.chunk_crcs) + self.footer()

    @classmethod
    def read(cls, fd: int) -> BlockChecksums:
        """The checksums of the block file open as *fd*, from its trailer; raises
        ChecksumMismatch if the trailer does not validate (the replica is corrupt)."""
        file_size = os.fstat(fd).st_size
        footer = _footer(fd, file_size, FOOTER_SIZE)
        magic, version, reserved, chunk_size, size, block_crc, n, raw_id = _FOOTER.unpack_from(
            footer
        )
        if magic != _MAGIC or version != TRAILER_VERSION or reserved != 0:
            raise ChecksumMismatch(f"unknown checksum trailer (magic {magic!r}, version {version})")
        crcs = _chunk_crcs(fd, file_size, chunk_size, size, n, FOOTER_SIZE)
        return cls(raw_id.hex(), chunk_size, size, block_crc, crcs)

    @classmethod
    def read_v2(cls, fd: int, block_id: str) -> BlockChecksums:
        """A version 2 trailer (no block id in its footer), for *block_id*: to upgrade it."""
        file_size = os.fstat(fd).st_size
        footer = _footer(fd, file_size, V2_FOOTER_SIZE)
        magic, version, reserved, chunk_size, size, block_crc, n = _FIELDS.unpack_from(footer)
        if magic != _MAGIC or version != 2 or reserved != 0:
            raise ChecksumMismatch(f"not a version 2 trailer (magic {magic!r}, version {version})")
        crcs = _chunk_crcs(fd, file_size, chunk_size, size, n, V2_FOOTER_SIZE)
        return cls(block_id, chunk_size, size, block_crc, crcs)

    @classmethod
    def decode_sidecar(cls, raw: bytes, block_id: str) -> BlockChecksums:
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
        return cls(block_id, chunk_size, size, block_crc, crcs)

    def chunk_range(self, offset: int, length: int) -> tuple[int, int]:
        """First chunk index and chunk count covering ``[offset, offset + length)``."""
        first = offset // self.chunk_size
        last = max(first, (offset + max(length, 1) - 1) // self.chunk_size)
        return first, min(last + 1, len(self.chunk_crcs)) - first


def _footer(fd: int, file_size: int, footer_size: int) -> bytes:
    if file_size < footer_size:
        raise ChecksumMismatch("block file too short for its checksum trailer")
    footer = os.pread(fd, footer_size, file_size - footer_size)
    if len(footer) != footer_size or crc(footer[:-4]) != int.from_bytes(footer[-4:], "little"):
        raise ChecksumMismatch("block file's checksum footer is damaged or missing")
    return footer


def _chunk_crcs(
    fd: int, file_size: int, chunk_size: int, size: int, n: int, footer_size: int
) -> list[int]:
    if chunk_size <= 0 or n != chunk_count(size, chunk_size):
        raise ChecksumMismatch("checksum trailer's chunk count does not fit its size")
    if file_size != size + 4 * n + footer_size:
        raise ChecksumMismatch("block file's length does not match its checksum trailer")
    raw = os.pread(fd, 4 * n, size)
    if len(raw) != 4 * n:
        raise ChecksumMismatch("block file shrank while its checksums were read")
    return list(struct.unpack(f"<{n}I", raw))


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
