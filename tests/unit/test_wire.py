import json

import msgspec
import pytest

from pydfs import wire
from pydfs.errors import InvalidPath, ProtocolError


@pytest.mark.parametrize(
    "value",
    [
        wire.ErrorBody("not_found", "/x: no such file"),
        wire.UploadRequest("/a/b", replication=3, block_size=1 << 20, overwrite=False),
        wire.CommitRequest([wire.StoredBlock("ab" * 16, 10, 0xFFFFFFFF, ["dn-1", "dn-2"])]),
        wire.HeartbeatReply([wire.Command("delete", ["ab" * 16])], send_report=True),
        wire.FileStatus(
            path="/f",
            name="f",
            type="file",
            size=3,
            mtime=1.5,
            ctime=1.0,
            owner="u",
            replication=2,
            block_size=4096,
            blocks=[wire.BlockInfo("cd" * 16, 3, 7, [wire.NodeRef("dn-1", "http://h:1", False)])],
        ),
    ],
)
def test_round_trip(value):
    assert wire.decode(wire.encode(value), type(value)) == value


def test_decode_accepts_str_and_fills_defaults():
    req = wire.decode('{"path": "/x"}', wire.UploadRequest)
    assert req == wire.UploadRequest("/x", None, None, True)


def test_decode_ignores_unknown_fields():
    # Newer peers may add fields; old ones must still understand the message.
    assert wire.decode(b'{"path": "/x", "future": 1}', wire.PathRequest) == wire.PathRequest("/x")


@pytest.mark.parametrize(
    ("data", "type_"),
    [
        (b"{not json", wire.PathRequest),
        (b"", wire.PathRequest),
        (b"[]", wire.PathRequest),
        (b"{}", wire.PathRequest),  # missing a required field
        (b'{"path": 1}', wire.PathRequest),
        (b'{"path": "/x", "recursive": "yes"}', wire.DeleteRequest),
        (b'{"path": "/x", "type": "socket"}', wire.DeleteRequest),
        (
            b'{"blocks": [{"block_id": "a", "size": "1", "crc": 0, "nodes": []}]}',
            wire.CommitRequest,
        ),
        (b'{"op": "format", "blocks": []}', wire.Command),
    ],
)
def test_decode_malformed_raises_protocol_error(data, type_):
    with pytest.raises(ProtocolError) as info:
        wire.decode(data, type_)
    assert type_.__name__ in str(info.value)
    assert not isinstance(info.value, msgspec.DecodeError)


def test_frame_header_layout():
    assert wire.FRAME.size == 8
    assert wire.FRAME.unpack(wire.FRAME.pack(5, 0xFFFFFFFF)) == (5, 0xFFFFFFFF)
    assert wire.API.startswith("/v")


@pytest.mark.parametrize(
    "body", [b'{"path": "/a\\ud800"}', b'{"path": "/a\\udcffb"}', b'{"path": "/\\ud800/x"}']
)
def test_a_lone_surrogate_is_an_invalid_path_not_truncated_input(body):
    with pytest.raises(InvalidPath, match="surrogate"):
        wire.decode(body, wire.PathRequest)
    with pytest.raises(InvalidPath, match="surrogate"):
        wire.encode(wire.PathRequest(json.loads(body)["path"]))  # as a client would send it


def test_a_surrogate_pair_is_one_character():
    assert wire.decode(b'{"path": "/\\ud83d\\ude00"}', wire.PathRequest).path == "/\U0001f600"


@pytest.mark.parametrize(
    "data, type_",
    [
        (b'{"path": "/a\\u0000b"}', wire.PathRequest),
        ('{"path": "\\u0000"}', wire.PathRequest),  # a str is read alike
        (b'{"path": "/x", "\\u0000": 1}', wire.PathRequest),  # in a key, even an ignored one
        (b'{"blocks": [], "expect": ["ab", "\\u0000"]}', wire.CommitRequest),
        (
            b'{"commits": [{"upload_id": "\\u0000", "commit": {"blocks": []}}]}',
            wire.CommitManyRequest,
        ),
        # invalid UTF-8 in a field msgspec skips, which Python's decoder refuses (the API fuzz)
        (b'{"path": "a\\u0000b", "x": "\xff"}', wire.PathRequest),
    ],
)
def test_a_nul_character_is_a_protocol_error(data, type_):
    """No name, id or text of pydfs holds NUL, and PostgreSQL's text cannot: refused on
    decoding, whichever store would have received it."""
    with pytest.raises(ProtocolError, match="NUL"):
        wire.decode(data, type_)


def test_a_backslash_before_u0000_is_text():
    assert wire.decode(b'{"path": "/a\\\\u0000"}', wire.PathRequest).path == "/a\\u0000"


def test_a_block_batch_unpacks_to_what_was_packed() -> None:
    blocks = [("a" * 32, "tok-a", b"frames of a"), ("b" * 32, "tok-b", b""), ("c" * 32, "t", b"c")]
    unpacked = wire.unpack_blocks(wire.pack_blocks(blocks))
    assert [(b.block_id, b.token, b.length, data) for b, data in unpacked] == [
        (i, t, len(f), f) for i, t, f in blocks
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x01\x00",
        wire.BATCH_HEAD.pack(1000) + b"{}",  # a head longer than the body
        wire.BATCH_HEAD.pack(2) + b"{}",  # no blocks
        wire.pack_blocks([("a" * 32, "t", b"abc")]) + b"more",  # bytes after the last block
        wire.pack_blocks([("a" * 32, "t", b"abc")])[:-1],  # a block cut short
        wire.pack_blocks([("a" * 32, "t", b"x" * (wire.WHOLE_BLOCK + 1))]),  # larger than a chunk
        wire.pack_blocks([("a" * 32, "t", b"")] * (wire.MAX_BLOCK_BATCH + 1)),
        wire.BATCH_HEAD.pack(3) + b"[1]",
    ],
)
def test_a_block_batch_that_does_not_add_up_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        wire.unpack_blocks(body)


def test_a_block_batch_with_a_negative_length_is_a_protocol_error() -> None:
    head = wire.encode(wire.BlockBatch([wire.BatchedBlock("a" * 32, "t", -3)]))
    with pytest.raises(ProtocolError):
        wire.unpack_blocks(wire.BATCH_HEAD.pack(len(head)) + head + b"abc")
