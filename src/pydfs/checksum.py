"""CRC32C per block and per chunk, and the on-disk checksum sidecar.

A block has one CRC32C over all its bytes (kept by the name node, shown by ``file_info``) and one
CRC32C per ``chunk_size`` bytes (kept beside the block in its sidecar), so that a ranged read is
verified without reading the whole block. The sidecar is versioned::

    magic "PDCK" | version u16 | reserved u16 | chunk_size u32 | size u64 | crc u32 | n u32
    then n chunk CRCs, u32 each

all little-endian.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass

from pydfs.errors import ProtocolError

DEFAULT_CHUNK_SIZE = 64 * 1024
SIDECAR_VERSION = 1
_MAGIC = b"PDCK"
_HEADER = struct.Struct("<4sHHIQII")


def crc(data: bytes | memoryview, value: int = 0) -> int:
    return int(_crc32c()(data, value))


@functools.cache
def _crc32c() -> Callable[[bytes | memoryview, int], int]:
    """The crc32c package, imported on first use: its import (which reads package metadata)
    costs a one-shot command that never touches block data more than the command itself."""
    from crc32c import crc32c

    return crc32c


@dataclass(frozen=True, slots=True)
class BlockChecksums:
    chunk_size: int
    size: int
    crc: int
    chunk_crcs: list[int]

    def encode(self) -> bytes:
        header = _HEADER.pack(
            _MAGIC,
            SIDECAR_VERSION,
            0,
            self.chunk_size,
            self.size,
            self.crc,
            len(self.chunk_crcs),
        )
        return header + struct.pack(f"<{len(self.chunk_crcs)}I", *self.chunk_crcs)

    @classmethod
    def decode(cls, raw: bytes) -> BlockChecksums:
        if len(raw) < _HEADER.size:
            raise ProtocolError("checksum sidecar truncated")
        magic, version, _, chunk_size, size, block_crc, n = _HEADER.unpack_from(raw)
        if magic != _MAGIC or version != SIDECAR_VERSION:
            raise ProtocolError(f"unknown checksum sidecar (magic {magic!r}, version {version})")
        if len(raw) != _HEADER.size + 4 * n or chunk_size <= 0:
            raise ProtocolError("checksum sidecar has the wrong length")
        crcs = list(struct.unpack_from(f"<{n}I", raw, _HEADER.size))
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
