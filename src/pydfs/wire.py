"""Every message that crosses the network, in one place.

Bodies are JSON encoded with msgspec; a server decodes a request into its declared Struct and
rejects anything else with ``ProtocolError``. Routes live under ``API`` so the protocol can move
to ``/v2`` without breaking old clients.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import msgspec

from pydfs.errors import InvalidPath, ProtocolError

API = "/v1"

# Headers.
H_REQUEST = "X-Pydfs-Request"  # a change's id (32 hex digits), the same in each attempt
H_PIPELINE = "X-Pydfs-Pipeline"  # "1": forward the write to the targets after this node
H_BLOCK_SIZE = "X-Pydfs-Block-Size"  # size of the whole block
H_BLOCK_CRC = "X-Pydfs-Block-Crc"  # the whole block's CRC32C, from the replica's trailer
H_CHUNK_SIZE = "X-Pydfs-Chunk-Size"
H_CHUNK_CRCS = "X-Pydfs-Chunk-Crcs"  # CRC32C of each chunk a read covers (hex, 8 chars each)
H_OFFSET = "X-Pydfs-Offset"  # where in the block a read answer starts (a chunk boundary)
H_BLOCK_TOKEN = "X-Pydfs-Block-Token"  # a block access token from the name node (pydfs.tokens)
H_SHA256 = "X-Pydfs-Sha256"  # a metadata backup's SHA-256 (hex), for the client to check
H_SCHEMA = "X-Pydfs-Schema"  # a metadata backup's schema version
H_TAKEN = "X-Pydfs-Taken"  # when a metadata backup was taken (Unix time)

# A block travels to a data node as frames: a header ``<length u32><crc32c u32>`` and then
# ``length`` bytes. Every frame but the last data frame is exactly ``CHUNK_SIZE`` bytes, so chunk
# CRCs line up with the block file's trailer; a final frame of length 0 carries the whole block's
# CRC. Each data node checks every frame before it acknowledges, so a write is verified end to end.
FRAME = struct.Struct("<II")
CHUNK_SIZE = 64 * 1024
# The most chunks one read answers (its CRCs travel in a header).
MAX_READ_CHUNKS = 256
# Small blocks and ranges, which client and data node both treat apart: a block of one chunk
# travels framed in one body (at most WHOLE_BLOCK bytes) over lean kept-alive connections, and
# the data node reads it whole; a range of at most SMALL_READ bytes is asked for in one GET and
# answered from one read of the (at most two) chunks that cover it. Both are what the data
# node's fast path takes.
WHOLE_BLOCK = 2 * FRAME.size + CHUNK_SIZE
SMALL_READ = CHUNK_SIZE


def body_reader(body: bytes) -> Callable[[int], Awaitable[bytes]]:
    """``readexactly(n)`` over a body received whole (a one-chunk block's frames, a small read's
    chunks), for code that otherwise reads them from a stream; a short body is a
    ``ProtocolError``."""
    view, pos = memoryview(body), 0

    async def readexactly(n: int) -> bytes:
        nonlocal pos
        data = bytes(view[pos : pos + n])
        pos += len(data)
        if len(data) < n:
            raise ProtocolError(f"body ended {n - len(data)} bytes short of what it announced")
        return data

    return readexactly


# Largest JSON body a server accepts from a client (a commit of ~70,000 blocks fits), and from a
# data node (a block report of ~7 million blocks); block data has its own limit (the block size).
MAX_JSON_BODY = 8 * 1024 * 1024
MAX_REPORT_BODY = 256 * 1024 * 1024

T = TypeVar("T")


class Struct(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=False):
    pass


class ErrorBody(Struct):
    code: str
    message: str
    request_id: str | None = None  # the request's X-Request-Id, to find it in the servers' logs


# --- namespace ----------------------------------------------------------------------------


class NodeRef(Struct):
    id: str
    url: str
    live: bool = True


class BlockInfo(Struct):
    id: str
    size: int
    crc: int
    nodes: list[NodeRef] = []
    token: str | None = None  # a read token, when the caller asked to read and may


class FileStatus(Struct):
    path: str
    name: str
    type: Literal["file", "dir", "symlink"]
    size: int
    mtime: float
    ctime: float
    owner: str
    group: str = ""
    mode: int = 0  # POSIX permission bits, with the sticky bit (0o1000)
    replication: int = 0
    block_size: int = 0
    blocks: list[BlockInfo] | None = None
    target: str | None = None  # a symbolic link's, as stored (never resolved)


class FileChecksum(Struct):
    """A file's SHA-256 as its writer computed it at upload (hex), or None if none was
    recorded; it proves what the writer computed, not what the data nodes hold now."""

    path: str
    type: Literal["file", "dir"]
    size: int
    sha256: str | None = None


class Listing(Struct):
    path: str
    entries: list[FileStatus]


class PathRequest(Struct):
    path: str


class SymlinkRequest(Struct):
    path: str
    target: str  # any text up to MAX_LINK_TARGET bytes, stored as given


MAX_LINK_TARGET = 4096  # bytes, as Linux's PATH_MAX


class MkdirRequest(Struct):
    path: str
    parents: bool = False


class DeleteRequest(Struct):
    path: str
    recursive: bool = False
    type: Literal["file", "dir", "any"] = "any"


MAX_DELETE_BATCH = 1000  # paths one /fs/delete-many may name


class DeleteManyRequest(Struct):
    paths: list[str]
    recursive: bool = False
    type: Literal["file", "dir", "any"] = "any"


class DeleteManyReply(Struct):
    deleted_files: int
    missing: list[str]  # the paths that were not there


class CopyRequest(Struct):
    src: str
    dst: str | None = None
    overwrite: bool = False


class MoveRequest(Struct):
    src: str
    dst: str
    overwrite: bool = False
    into: bool = True  # an existing directory at dst receives src (mv); False: rename(2)


class TimesRequest(Struct):
    path: str
    mtime: float


class ChmodRequest(Struct):
    path: str
    mode: int
    recursive: bool = False


class ChownRequest(Struct):
    path: str
    owner: str | None = None
    group: str | None = None
    recursive: bool = False


class Space(Struct):
    raw_capacity: int
    raw_free: int
    used: int
    usable: int
    replication: int
    live_nodes: int
    dead_nodes: int


class SetReplicationRequest(Struct):
    path: str
    replication: int


class FileHealth(Struct):
    path: str
    blocks: int = 0
    healthy: int = 0
    under_replicated: int = 0
    missing: int = 0
    corrupt: int = 0


MAX_MISSING_LISTED = 100  # paths of files with missing blocks an fsck report names


class Orphans(Struct):
    """Since the metadata was restored from a backup: blocks data nodes hold that no file names
    (those of files written after the backup), kept until an admin lets them go."""

    taken: float | None  # when the backup was taken (None: unknown)
    restored: float  # when it was restored
    blocks: int = 0
    replicas: int = 0
    bytes: int = 0  # of the blocks measured
    unmeasured: int = 0  # blocks whose size no data node has told yet


class Backup(Struct):
    """A metadata backup as the client received it (its answer's headers, and its size)."""

    size: int
    sha256: str
    schema: int
    taken: float


class FsckReport(Struct):
    path: str
    files: int = 0
    blocks: int = 0
    healthy: int = 0
    under_replicated: int = 0
    missing: int = 0
    corrupt: int = 0
    file_details: list[FileHealth] = []
    missing_files: int = 0  # files with a missing block
    missing_paths: list[str] = []  # the first MAX_MISSING_LISTED of them, sorted
    restore: Orphans | None = None  # a restore awaits an admin's word

    @property
    def status(self) -> str:
        if self.missing:
            return "MISSING BLOCKS"
        if self.restore is not None:
            return "RESTORED"
        return "HEALTHY" if self.healthy == self.blocks and not self.corrupt else "DEGRADED"


class NodeRequest(Struct):
    node: str


class CorruptReplica(Struct):
    block: str
    node: str


class FormatReply(Struct):
    removed_files: int
    removed_blocks: int
    space: Space


# --- uploads ------------------------------------------------------------------------------


class UploadRequest(Struct):
    path: str
    replication: int | None = None
    block_size: int | None = None
    overwrite: bool = True


class BlockGrant(Struct):
    block_id: str
    targets: list[NodeRef]
    token: str = ""  # a write token for this block, good on every target


class UploadGrant(Struct):
    upload_id: str
    path: str  # "" for an upload from a batch, which its commit names
    replication: int
    block_size: int
    block: BlockGrant


class UploadBatchRequest(Struct):
    """Leases for several small files ahead of time, their paths named at commit: a small file
    then costs one block write and one commit, not three round trips."""

    count: int
    replication: int | None = None
    block_size: int | None = None


class UploadBatch(Struct):
    uploads: list[UploadGrant]


class BlockAllocRequest(Struct):
    exclude: list[str] = []


class StoredBlock(Struct):
    """A block as the write pipeline stored it: what a data node acknowledges to its writer."""

    block_id: str
    size: int
    crc: int
    nodes: list[str]


# Many small blocks to one data node in one request (``POST /blocks?block=<first id>``, with
# the first block's token as a single PUT carries it: the request is admitted on its head), each
# as it would go alone: a ``BlockBatch`` (JSON) whose length leads the body as a ``BATCH_HEAD``,
# then each block's frames (at most ``WHOLE_BLOCK`` bytes), in order. The node makes the lot
# durable with one flush of its disk and answers each block on its own (``BlockBatchReply``).
BATCH_HEAD = struct.Struct("<I")
MAX_BLOCK_BATCH = 64  # blocks one /blocks batch carries, at most
BATCHED_HEAD = 4096  # bytes of the head one block may take (its id, token and length in JSON)
MAX_BATCH_BODY = BATCH_HEAD.size + MAX_BLOCK_BATCH * (WHOLE_BLOCK + BATCHED_HEAD)


class BatchedBlock(Struct):
    block_id: str
    token: str  # its write token, as a PUT of the block alone carries it
    length: int  # bytes of its frames in the body


class BlockBatch(Struct):
    blocks: list[BatchedBlock]


class BatchedResult(Struct):
    """One block's outcome: stored on this node, or why not (nothing of it kept)."""

    stored: StoredBlock | None = None
    error: ErrorBody | None = None


class BlockBatchReply(Struct):
    results: list[BatchedResult]  # one per block, in the request's order


def pack_blocks(blocks: list[tuple[str, str, bytes]]) -> bytes:
    """The body of a ``POST /blocks`` of (block id, token, framed block) triples."""
    head = encode(BlockBatch([BatchedBlock(i, t, len(framed)) for i, t, framed in blocks]))
    return b"".join([BATCH_HEAD.pack(len(head)), head, *(framed for _, _, framed in blocks)])


def unpack_blocks(body: bytes) -> list[tuple[BatchedBlock, bytes]]:
    """Each block of a ``POST /blocks`` body with its frames; a body that does not add up is a
    ``ProtocolError``."""
    if len(body) < BATCH_HEAD.size:
        raise ProtocolError("block batch shorter than its head")
    (size,) = BATCH_HEAD.unpack_from(body)
    start = BATCH_HEAD.size + size
    if start > len(body):
        raise ProtocolError("block batch shorter than its head")
    if size > MAX_BLOCK_BATCH * BATCHED_HEAD:
        raise ProtocolError("block batch head too long")
    batch = decode(body[BATCH_HEAD.size : start], BlockBatch)
    if not 1 <= len(batch.blocks) <= MAX_BLOCK_BATCH:
        raise ProtocolError(f"a block batch carries 1 to {MAX_BLOCK_BATCH} blocks")
    view, out = memoryview(body), []
    for block in batch.blocks:
        if not 0 <= block.length <= WHOLE_BLOCK:
            raise ProtocolError("a batched block is larger than one chunk with its frames")
        if len(block.token) > BATCHED_HEAD // 2:
            raise ProtocolError("a batched block's token is too long")
        out.append((block, bytes(view[start : start + block.length])))
        start += block.length
    if start != len(body):
        raise ProtocolError("block batch body does not match the lengths its head gives")
    return out


class KeptBlock(Struct):
    """A block of the file's current version that its new version keeps, at *index*: the
    commit's blocks fill the other places, in order."""

    index: int
    block_id: str


class CommitRequest(Struct):
    blocks: list[StoredBlock]
    path: str | None = None  # the file of an upload from a batch; others named it at start
    overwrite: bool = True  # for an upload from a batch
    sha256: str | None = None  # the whole content's SHA-256 (hex), as the writer computed it
    # Replace the file only if it is still the version the writer started from: it exists and
    # names exactly these blocks (None: no condition). A mounted file's writer sets it.
    expect: list[str] | None = None
    # Blocks of that version kept as they are (only with *expect*, which they must be among): a
    # writer that changed part of a file sends only the blocks it changed. Every block of the
    # new version but its last must then be full, so that kept blocks hold the same bytes.
    keep: list[KeptBlock] = []


MAX_COMMIT_BATCH = 256  # uploads one /uploads/commit-many may commit


class UploadCommit(Struct):
    """One file of a ``/uploads/commit-many``: its upload, and that upload's commit."""

    upload_id: str
    commit: CommitRequest


class CommitManyRequest(Struct):
    """Commits of many uploads in one request and one transaction: each file succeeds or
    fails on its own, and every upload named is closed either way."""

    commits: list[UploadCommit]


class CommitResult(Struct):
    """One file's outcome: the file as committed, or why it was not (nothing of it applied)."""

    status: FileStatus | None = None
    error: ErrorBody | None = None


class CommitManyReply(Struct):
    results: list[CommitResult]  # one per commit, in the request's order


class OpenUpload(Struct):
    """An upload not committed yet, as administrators see it."""

    id: str
    user: str
    path: str | None  # None: a lease from a batch, whose commit will name its file
    age: float  # seconds since it was granted
    expires_in: float  # seconds until it is abandoned unless renewed (lifetime permitting)
    blocks: int  # blocks granted to it
    granted: int  # bytes those blocks may hold, per replica
    replication: int


class UploadList(Struct):
    uploads: list[OpenUpload]


# --- data nodes ---------------------------------------------------------------------------


AdminState = Literal["normal", "decommissioning", "decommissioned"]


class DataNodeState(Struct):
    id: str
    url: str
    state: Literal["live", "dead"]
    admin_state: AdminState
    capacity: int
    used: int
    free: int
    blocks: int
    last_heartbeat: float
    write_failure: str = ""  # why its disk refused a block lately: others get new ones


class Received(Struct, array_like=True):
    """A replica a data node stored or found good when the name node asked, with what its
    trailer says: the name node counts it only if that is what it recorded for the block.
    ``how``: "w" a client's write, "c" a copy the name node ordered, "v" a verification it
    ordered."""

    block: str
    size: int
    crc: int
    how: Literal["w", "c", "v"] = "w"


class Heartbeat(Struct):
    id: str
    url: str
    incarnation: str  # new each time the data node process starts
    capacity: int
    used: int
    free: int
    blocks: int
    received: list[Received] = []  # since the last heartbeat: writes, copies, verified
    corrupt: list[str] = []  # replicas that failed verification (quarantined) or are gone
    failed_copies: list[str] = []  # replication orders that could not be carried out
    # Why the node's disk refused a block lately ("" if it did not): others get new ones.
    write_failure: str = ""


class Command(Struct):
    """Work for a data node. ``delete``: drop these replicas. ``replicate``: copy these blocks
    to ``target``. ``verify``: check these replicas now (a reader found one bad or missing, or
    a block report named one the name node had not counted)."""

    op: Literal["delete", "replicate", "verify"]
    blocks: list[str]
    target: NodeRef | None = None
    tokens: list[str] = []  # replicate: a write token per block, for the target


class HeartbeatReply(Struct):
    commands: list[Command] = []
    send_report: bool = False


class BlockReport(Struct):
    id: str
    blocks: list[str]
    took: float = 0.0  # seconds from the start of the listing to sending it


class DataNodeList(Struct):
    nodes: list[DataNodeState]


class NameNodeState(Struct):
    """One name node as it sees itself: whether it leads the background work, and its store."""

    url: str
    leads: bool
    leader: str  # the leading name node's URL, as its lease says; "" if none is known
    epoch: int  # the lease's epoch: one more at every change of leader
    lease_left: float  # seconds the leader's lease runs unless renewed
    takeovers: int  # times this name node took the lead since it started
    metadata: str  # the store's kind: "sqlite" or "postgresql"
    metadata_up: bool  # the last renewal of the lease reached the store
    metadata_lost: int = 0  # connections to the database server lost (failovers show as some)


# --- users --------------------------------------------------------------------------------


class UserInfo(Struct):
    name: str
    admin: bool
    groups: list[str]
    home: str


class UserList(Struct):
    users: list[UserInfo]


class NewUser(Struct):
    name: str
    admin: bool = False
    groups: list[str] = []


class UserName(Struct):
    name: str


class UserToken(Struct):
    """A user's new token: shown once, never stored by the name node."""

    name: str
    token: str


# --- encoding -----------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


_LONE_SURROGATE = "a name holds a lone UTF-16 surrogate, which is no character (not valid UTF-8)"


def encode(obj: Any) -> bytes:
    try:
        return _encoder.encode(obj)
    except UnicodeEncodeError:  # such as a name made of undecodable bytes (surrogateescape)
        raise InvalidPath(_LONE_SURROGATE) from None


def decode(data: bytes | str, type: type[T]) -> T:
    """Decode *data* into *type*, turning any malformed input into ``ProtocolError``, or into
    ``InvalidPath`` for a string that escapes a lone surrogate (``"\\ud800"``), which msgspec
    reports as truncated input. A string holding NUL (``"\\u0000"``) is a ``ProtocolError``
    too: no name, id or text of pydfs may hold one, and PostgreSQL's text cannot."""
    try:
        value = msgspec.json.decode(data, type=type)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        if isinstance(exc, msgspec.DecodeError) and _any_string(data, _has_lone_surrogate):
            raise InvalidPath(_LONE_SURROGATE) from None
        raise ProtocolError(f"malformed {type.__name__}: {exc}") from None
    # JSON spells NUL only as this escape: a body without it costs one scan, no second look.
    escaped = b"\\u0000" in data if isinstance(data, bytes) else "\\u0000" in data
    if escaped and _any_string(data, lambda text: "\0" in text, unreadable=True):
        raise ProtocolError(f"malformed {type.__name__}: a string holds a NUL character")
    return value


def _has_lone_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def _any_string(
    data: bytes | str, test: Callable[[str], bool], *, unreadable: bool = False
) -> bool:
    """Does *data*, JSON that msgspec refused or that holds a suspect escape, hold a string
    (a key or a value) for which *test* holds? (Python's own decoder accepts lone surrogates;
    only such a body costs this second look.) *unreadable* is the answer for a body Python's
    decoder refuses though msgspec took it (invalid UTF-8 in a field msgspec skipped)."""
    try:
        value = json.loads(data)
    except ValueError:
        return unreadable
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, str):
            if test(item):
                return True
        elif isinstance(item, dict):
            todo.extend(item)
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return False
