import struct

import pytest

from pydfs import checksum
from pydfs.checksum import BlockChecksums
from pydfs.errors import ProtocolError


def _sums() -> BlockChecksums:
    return BlockChecksums(chunk_size=4, size=10, crc=0xDEADBEEF, chunk_crcs=[1, 0xFFFFFFFF, 7])


def test_crc32c_known_value():
    # The CRC-32C check value (RFC 3720, appendix B.4).
    assert checksum.crc(b"123456789") == 0xE3069283
    assert checksum.crc(b"6789", checksum.crc(b"12345")) == 0xE3069283


def test_sidecar_round_trip():
    sums = _sums()
    raw = sums.encode()
    assert raw[:4] == b"PDCK"
    assert BlockChecksums.decode(raw) == sums


def test_sidecar_round_trip_empty_block():
    sums = BlockChecksums(65536, 0, 0, [])
    assert BlockChecksums.decode(sums.encode()) == sums


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda raw: b"XXXX" + raw[4:],  # magic
        lambda raw: raw[:4] + struct.pack("<H", 2) + raw[6:],  # version
        lambda raw: raw[:10],  # truncated header
        lambda raw: raw[:-1],  # truncated CRC list
        lambda raw: raw + b"\0\0\0\0",  # trailing bytes
        lambda raw: raw[:8] + struct.pack("<I", 0) + raw[12:],  # chunk size 0
        lambda raw: b"",
    ],
)
def test_sidecar_decode_rejects(corrupt):
    with pytest.raises(ProtocolError):
        BlockChecksums.decode(corrupt(_sums().encode()))


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
