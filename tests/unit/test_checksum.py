import struct

import pytest

from pydfs import checksum
from pydfs.checksum import FOOTER_SIZE, BlockChecksums
from pydfs.errors import ChecksumMismatch, ProtocolError

DATA = b"0123456789"
BLOCK = "00112233445566778899aabbccddeeff"


def _sums(block_id: str = BLOCK) -> BlockChecksums:
    return BlockChecksums(block_id, 4, 10, 0xDEADBEEF, [1, 0xFFFFFFFF, 7])


def footer(
    magic=b"PDBT", version=3, reserved=0, chunk_size=4, size=10, n=3, block=BLOCK, footer_crc=None
):
    """A footer written out by hand from the documented layout (not with the code under test)."""
    raw = struct.pack(
        "<4sHHIQII16s",
        magic,
        version,
        reserved,
        chunk_size,
        size,
        0xDEADBEEF,
        n,
        bytes.fromhex(block),
    )
    return raw + struct.pack("<I", checksum.crc(raw) if footer_crc is None else footer_crc)


def v2_footer(chunk_size=4, size=10, n=3):
    raw = struct.pack("<4sHHIQII", b"PDBT", 2, 0, chunk_size, size, 0xDEADBEEF, n)
    return raw + struct.pack("<I", checksum.crc(raw))


def read(tmp_path, raw: bytes) -> BlockChecksums:
    path = tmp_path / "block.blk"
    path.write_bytes(raw)
    with open(path, "rb") as f:
        return BlockChecksums.read(f.fileno())


def test_crc32c_known_value():
    # The CRC-32C check value (RFC 3720, appendix B.4).
    assert checksum.crc(b"123456789") == 0xE3069283
    assert checksum.crc(b"6789", checksum.crc(b"12345")) == 0xE3069283


def test_trailer_follows_the_documented_layout():
    trailer = _sums().trailer()
    assert FOOTER_SIZE == 48
    assert trailer == struct.pack("<3I", 1, 0xFFFFFFFF, 7) + footer()


def test_trailer_round_trip(tmp_path):
    assert read(tmp_path, DATA + _sums().trailer()) == _sums()


def test_trailer_names_its_block(tmp_path):
    other = "f" * 32
    assert read(tmp_path, DATA + CRCS + footer(block=other)) == _sums(other)


def test_trailer_round_trip_empty_block(tmp_path):
    sums = BlockChecksums(BLOCK, 65536, 0, 0, [])
    assert len(sums.trailer()) == FOOTER_SIZE
    assert read(tmp_path, sums.trailer()) == sums


def test_trailer_with_a_chunk_exactly_full(tmp_path):
    sums = BlockChecksums(BLOCK, 5, 10, 3, [1, 2])
    assert read(tmp_path, DATA + sums.trailer()) == sums


def test_version_2_trailer_is_read_only_to_upgrade(tmp_path):
    path = tmp_path / "old.blk"
    path.write_bytes(DATA + CRCS + v2_footer())
    with open(path, "rb") as f:
        with pytest.raises(ChecksumMismatch):
            BlockChecksums.read(f.fileno())
        assert BlockChecksums.read_v2(f.fileno(), BLOCK) == _sums()


CRCS = struct.pack("<3I", 1, 0xFFFFFFFF, 7)


@pytest.mark.parametrize(
    "raw",
    [
        DATA + CRCS + footer(magic=b"PDCK"),
        DATA + CRCS + footer(version=1),
        DATA + CRCS + footer(version=2),
        DATA + CRCS + footer(version=4),
        DATA + CRCS + v2_footer(),  # the previous format: upgraded at start, never served
        DATA + CRCS + footer(reserved=1),
        DATA + CRCS + footer(footer_crc=0),  # garbled footer
        DATA + CRCS + footer()[:-1] + b"\0",  # the footer's CRC garbled
        DATA + CRCS + footer(chunk_size=0, n=0),
        DATA + CRCS + footer(n=2),  # chunk count does not fit the size
        DATA + CRCS + footer(n=4),
        DATA + CRCS + footer(chunk_size=3),  # 10 bytes in chunks of 3 are 4 chunks
        DATA + CRCS + footer(size=11),  # more data than the file holds
        DATA + CRCS + footer(size=9),  # fewer: the file is longer than its trailer says
        DATA[:-1] + CRCS + footer(),  # truncated data
        DATA + CRCS + footer() + b"x",  # grown
        DATA + CRCS + footer()[:-1],  # truncated footer
        DATA + CRCS[:-4] + footer(),  # a chunk CRC lost
        footer()[:-1],
        b"",
        DATA,  # no trailer at all (a block of the first format)
    ],
)
def test_trailer_read_rejects(tmp_path, raw):
    with pytest.raises(ChecksumMismatch):
        read(tmp_path, raw)


def sidecar(sums: BlockChecksums, magic=b"PDCK", version=1) -> bytes:
    """A first-format sidecar, from its documented layout."""
    header = struct.pack(
        "<4sHHIQII", magic, version, 0, sums.chunk_size, sums.size, sums.crc, len(sums.chunk_crcs)
    )
    return header + struct.pack(f"<{len(sums.chunk_crcs)}I", *sums.chunk_crcs)


def test_sidecar_decode():
    assert BlockChecksums.decode_sidecar(sidecar(_sums()), BLOCK) == _sums()
    empty = BlockChecksums(BLOCK, 65536, 0, 0, [])
    assert BlockChecksums.decode_sidecar(sidecar(empty), BLOCK) == empty


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda raw: b"XXXX" + raw[4:],  # magic
        lambda raw: raw[:4] + struct.pack("<H", 2) + raw[6:],  # version
        lambda raw: raw[:10],  # truncated header
        lambda raw: raw[:-1],  # truncated CRC list
        lambda raw: raw + b"\0\0\0\0",  # trailing bytes
        lambda raw: raw[:8] + struct.pack("<I", 0) + raw[12:],  # chunk size 0
        lambda raw: raw[:8] + struct.pack("<I", 5) + raw[12:],  # chunk count does not fit
        lambda raw: b"",
    ],
)
def test_sidecar_decode_rejects(corrupt):
    with pytest.raises(ProtocolError):
        BlockChecksums.decode_sidecar(corrupt(sidecar(_sums())), BLOCK)


def test_pack_unpack_crcs():
    crcs = [0, 1, 0xDEADBEEF, 0xFFFFFFFF]
    packed = checksum.pack_crcs(crcs)
    assert len(packed) == 8 * len(crcs)
    assert checksum.unpack_crcs(packed) == crcs
    assert checksum.unpack_crcs("") == []


@pytest.mark.parametrize(
    "bad", ["1234567", "0000000g", "deadbeef1", "-0000001", "+0000001", "0x000001", "0000_001"]
)
def test_unpack_crcs_rejects(bad):
    with pytest.raises(ProtocolError):
        checksum.unpack_crcs(bad)


@pytest.mark.parametrize(
    ("offset", "length", "expected"),
    [
        (0, 10, (0, 3)),  # the whole block
        (0, 4, (0, 1)),
        (3, 2, (0, 2)),  # straddles chunks 0 and 1
        (4, 4, (1, 1)),
        (8, 100, (2, 1)),  # clipped at the last chunk
        (5, 0, (1, 1)),  # an empty read still covers its chunk
    ],
)
def test_chunk_range(offset, length, expected):
    assert _sums().chunk_range(offset, length) == expected
