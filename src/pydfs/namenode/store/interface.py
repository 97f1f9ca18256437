"""What a metadata backend implements: a store that opens transactions, and the repositories a
transaction holds. The name node's modules speak only this; each backend owns its dialect, its
migrations and its durability.

Every method is ``async``: the embedded SQLite backend answers without suspending, a networked
one (PostgreSQL) awaits its server. A transaction sees its own changes, and ``Store.write()``
returns only once its commit is durable: what a caller acknowledges after it survives a crash.
A ``Store.read()`` sees changes all of one moment (a file's size and its blocks of one version),
and its caller may acknowledge what it read: a backend whose changes become visible before they
are committed and durable (SQLite's writes that share a transaction, its commits before their
fsync) makes a read wait for them (not for soft state's, see ``Store.write``), and fail if they
fail.

The namespace caches directories; a backend keeps a *generation* that every write reshaping the
tree (renames, deletes of directories, modes, owners) bumps, and that every name node can read,
so that a cache is dropped when any name node reshaped the tree; a backend that let a read see
changes that then failed to commit bumps it too.

A request that changes something is applied once, however often its client sends it again
(``namenode.applied``): while it runs, ``APPLYING`` names it, and the first write transaction
that commits for it records its id in the same transaction, so that the change and the record
are durable together or not at all. A write that finds the id recorded by another attempt of
the request (on this name node or another) raises ``AppliedElsewhere`` and applies nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from pathlib import Path
from typing import NamedTuple, Protocol


class Inode(NamedTuple):
    """A row of the tree (a tuple: a listing makes thousands of them)."""

    id: int
    parent: int
    name: str
    type: str  # "f" (file), "d" (directory) or "l" (symbolic link)
    size: int
    mtime: float
    ctime: float
    owner: str
    replication: int
    block_size: int
    group: str
    mode: int
    target: str | None = None  # a symbolic link's, as given: never resolved

    @property
    def is_dir(self) -> bool:
        return self.type == "d"


Entry = tuple[str, str, int, float, float, str, str, int, int, int, "str | None"]
"""A directory's entry as a listing shows it: name, type, size, mtime, ctime, owner, group, mode,
replication, block size and link target. A plain tuple of only these columns, not an ``Inode``:
a listing makes thousands, and each column more or object built per row costs it a tenth."""


class NewInode(NamedTuple):
    parent: int
    name: str
    type: str
    owner: str
    group: str
    mode: int
    mtime: float
    size: int = 0
    replication: int = 0
    block_size: int = 0
    target: str | None = None


class Block(NamedTuple):
    id: str
    size: int
    crc: int


class Placed(NamedTuple):
    """A file's block, with the nodes its counted replicas are on."""

    block: Block
    nodes: list[str]


class Misreplicated(NamedTuple):
    block: str
    size: int
    required: int
    holders: list[str]


class BlockHealth(NamedTuple):
    inode: int
    block: str
    required: int
    serving: int  # counted replicas on serving nodes
    readable: int  # counted replicas on live nodes


class UserRow(NamedTuple):
    name: str
    token_hash: str
    admin: bool
    groups: tuple[str, ...]
    ctime: float


class DataNodeRow(NamedTuple):
    id: str
    url: str
    admin_state: str


class UploadRow(NamedTuple):
    id: str
    user: str
    path: str | None  # None until the commit of an upload from a batch names it
    replication: int
    block_size: int
    overwrite: bool
    started: float  # wall clock: every name node reads it
    expires: float


class Inodes(Protocol):
    async def get(self, inode_id: int) -> Inode | None: ...
    async def child(self, parent: int, name: str) -> Inode | None: ...
    async def entries(self, parent: int) -> Iterable[Entry]:
        """The children of *parent*, sorted by name, to be read before the transaction ends
        (SQLite's rows come from its cursor as they are read: a large directory is where
        per-entry work shows)."""

    async def has_children(self, inode_id: int) -> bool: ...
    async def page(
        self, parent: int, limit: int, *, after: str | None = None, before: str | None = None
    ) -> list[Inode]:
        """At most *limit* children in name order: the first, those after the name *after*,
        or the last before the name *before*."""

    async def beyond(self, parent: int, name: str, later: bool) -> bool:
        """Has *parent* a child named after (*later*) or before *name*?"""

    async def tally(self, parent: int) -> dict[str, tuple[int, int]]:
        """The children of *parent* by type: how many, and their bytes."""

    async def subtree(self, inode_id: int) -> list[Inode]:
        """The inode and everything below it, parents before children."""

    async def insert(
        self, new: NewInode, *, inode_id: int | None = None, sha256: str | None = None
    ) -> int:
        """A new inode's id (*inode_id*, or a fresh one), its content's *sha256* recorded with
        it; ``AlreadyExists`` if the parent holds the name."""

    async def touch(self, inode_ids: Iterable[int], mtime: float) -> None: ...
    async def set_content(
        self, inode_id: int, *, size: int, mtime: float, replication: int, block_size: int
    ) -> None: ...
    async def rename(self, inode_id: int, parent: int, name: str) -> None: ...
    async def delete(self, inode_ids: list[int]) -> None: ...
    async def delete_all_but(self, inode_id: int) -> None: ...
    async def set_mode(self, inode_ids: list[int], mode: int) -> int: ...
    async def set_owner(self, inode_ids: list[int], owner: str | None, group: str | None) -> int:
        """``None`` keeps the owner or group as it is."""

    async def set_replication(self, inode_ids: list[int], replication: int) -> int:
        """Of the files among *inode_ids*; how many."""

    async def counts(self) -> dict[str, int]:
        """Inodes by type."""

    async def sha256(self, inode_id: int) -> str | None:
        """The whole content's SHA-256 its writer computed (hex), if recorded."""

    async def set_sha256(self, inode_id: int, sha256: str | None) -> None: ...


class BlockMap(Protocol):
    """Blocks, which files name them (in order), their counted replicas, and the trash: replicas
    their data nodes are to delete."""

    async def get(self, block_id: str) -> Block | None: ...
    async def of_file(self, inode_id: int) -> list[Placed]: ...
    async def add(self, blocks: list[Block], ctime: float) -> None: ...
    async def attach(self, inode_id: int, block_ids: list[str]) -> None: ...
    async def share(self, source: int, target: int) -> None:
        """*target* names *source*'s blocks."""

    async def detach(self, inode_ids: list[int]) -> set[str]:
        """Files *inode_ids* name no blocks any more; returns the blocks they named."""

    async def release(self, block_ids: set[str]) -> None:
        """Of *block_ids*, those no file names: their replicas go to the trash, and they go."""

    async def release_all(self) -> int:
        """Every block goes, every replica to the trash; returns how many blocks went."""

    async def count(self) -> int: ...
    async def known(self, block_ids: Iterable[str]) -> set[str]:
        """Those of *block_ids* that are blocks."""

    async def holders(self, block_id: str) -> list[str]: ...
    async def holds(self, node: str, block_id: str) -> bool: ...
    async def on_node(self, node: str) -> dict[str, float]:
        """The blocks *node* holds counted replicas of, each with when it was counted."""

    async def add_replica(self, block_id: str, node: str, added: float) -> bool: ...
    async def add_replicas(self, pairs: list[tuple[str, str]], added: float) -> None:
        """(block, node) pairs."""

    async def drop_replicas(self, pairs: Iterable[tuple[str, str]]) -> int:
        """(block, node) pairs; how many were counted."""

    async def trash(self, pairs: Iterable[tuple[str, str]]) -> int:
        """(node, block) pairs; how many were not there yet."""

    async def trash_unknown(self, pairs: Iterable[tuple[str, str]]) -> int:
        """(node, block) pairs of replicas nobody may want: those whose block is no block, and
        whose node no open upload's grant of the block names, as this one statement runs, go to
        the trash; how many. One statement, so that a commit through another name node, which
        makes a granted block a block at once, cannot fall between two looks and lose a
        replica."""

    async def untrash(self, pairs: Iterable[tuple[str, str]]) -> None:
        """(node, block) pairs."""

    async def trashed_on(self, node: str, limit: int | None = None) -> list[str]: ...
    async def misreplicated(self, serving: set[str]) -> list[Misreplicated]:
        """Every named block whose count of replicas on *serving* nodes is not what its files
        require (the highest factor of the files naming it); the fewest first."""

    async def lacking_on(self, node: str, serving: set[str]) -> int:
        """How many blocks *node* holds that lack replicas on *serving* nodes."""

    async def health(
        self, inode_ids: list[int], serving: set[str], live: set[str]
    ) -> list[BlockHealth]:
        """Each block of the files among *inode_ids*, in file and block order."""


class Users(Protocol):
    async def lock(self, key: str = "") -> None:
        """Hold a lock named *key* until the transaction ends, so that a check that reads
        several rows, then writes (the last admin; a user's open uploads, keyed by the user),
        holds against the same check on another name node."""

    async def by_token_hash(self, token_hash: str) -> UserRow | None: ...
    async def by_name(self, name: str) -> UserRow | None: ...
    async def all(self) -> list[UserRow]: ...
    async def add(self, user: UserRow) -> None:
        """``AlreadyExists`` if the name or token is taken."""

    async def remove(self, names: Iterable[str]) -> None: ...
    async def set_token_hash(self, name: str, token_hash: str) -> None: ...
    async def set_groups(self, name: str, groups: tuple[str, ...]) -> None: ...


class DataNodes(Protocol):
    async def all(self) -> list[DataNodeRow]: ...
    async def put(self, node_id: str, url: str) -> None:
        """Add a node, or give a known one its new URL."""

    async def set_admin_state(self, node_id: str, state: str) -> None: ...


class Uploads(Protocol):
    """Upload leases: files being written, and the blocks granted to them (with the nodes each
    grant named)."""

    async def open(self, upload: UploadRow) -> None: ...
    async def get(self, upload_id: str) -> UploadRow | None: ...
    async def renew(self, upload_id: str, expires: float) -> None: ...
    async def grant(self, upload_id: str, block_id: str, nodes: list[str]) -> None: ...
    async def granted(self, upload_id: str) -> dict[str, list[str]]: ...
    async def close(self, upload_id: str) -> None:
        """Forget the upload and its grants."""

    async def open_by(self, user: str) -> int: ...
    async def expired(self, now: float) -> list[str]: ...
    async def all(self) -> list[tuple[UploadRow, int]]:
        """Every open upload, the oldest first, with how many blocks it was granted."""

    async def grant_of(self, block_id: str) -> list[str] | None:
        """The nodes an open upload's grant of *block_id* named; None if none did."""

    async def in_flight(self, block_ids: Iterable[str]) -> set[str]:
        """Those of *block_ids* granted to open uploads."""


class Lease(NamedTuple):
    """Who leads the background work, and since which epoch."""

    holder: str  # a name node process's random id; "" when nobody ever led
    url: str  # where that name node said it serves
    epoch: int  # one more at every change of holder
    left: float  # seconds the lease still runs, by the store's clock (negative: lapsed)
    nudges: int  # asks for a replication scan, from name nodes that do not lead


class Leader(Protocol):
    """The lease on background work (replication, trimming, block reports, expiry): one name
    node holds it at a time. Its times are the store's clock, so name nodes' clocks need not
    agree."""

    async def claim(self, holder: str, url: str, ttl: float) -> Lease:
        """Take the lease for *ttl* seconds if it is free or lapsed (the epoch goes up), or
        extend it if *holder* has it; returns the lease as it now is, whoever holds it."""

    async def holds(self, holder: str, epoch: int) -> bool:
        """Does *holder* hold the lease, at *epoch*, unlapsed? In a write, no claim can take the
        lease until the transaction ends (the check holds for the whole of it)."""

    async def resign(self, holder: str) -> None:
        """Let the lease lapse now, if *holder* has it (a clean stop hands over at once)."""

    async def nudge(self) -> None:
        """Ask the leader for a replication scan (something changed on another name node)."""

    async def current(self) -> Lease: ...


class Restored(NamedTuple):
    """A restore of the metadata from a backup, awaiting an admin's word (``Restore``)."""

    taken: float | None  # when the backup was taken (None: a copy too old to say)
    restored: float


class Orphans(NamedTuple):
    """Blocks data nodes hold that no file names, kept since a restore."""

    blocks: int
    replicas: int
    bytes: int  # of the blocks measured
    unmeasured: int  # blocks no node has measured yet


class BackupInfo(NamedTuple):
    size: int
    sha256: str  # of the copy's bytes, hex
    schema: int
    taken: float


class Restore(Protocol):
    """After the metadata was restored from a backup, data nodes hold blocks that no file names:
    those of files written after the backup, their only copies. Until an admin lets them go
    (``finish``), the name node deletes no such block; it keeps a list of them instead."""

    async def state(self) -> Restored | None:
        """The restore that awaits an admin's word; None (the usual case): blocks nobody
        names are deleted."""

    async def keep(self, node: str, blocks: set[str]) -> list[str]:
        """*node* holds exactly these blocks that no file names (a block report): keep them in
        the list, instead of its earlier ones; returns those not measured yet."""

    async def measured(self, node: str, block: str, size: int) -> None:
        """*node* verified a block no file names: keep it in the list, with its size."""

    async def orphans(self) -> Orphans: ...
    async def finish(self) -> Orphans:
        """The admin lets the kept blocks go: forget them, and the restore; what they were."""


class Applying:
    """The request being served, as the write transactions it makes record it: *user* and its
    *request_id* (the client's, the same in every attempt), this attempt's own *attempt* id,
    and whether a commit of this attempt *recorded* it yet."""

    __slots__ = ("attempt", "recorded", "request_id", "user")

    def __init__(self, user: str, request_id: str, attempt: str) -> None:
        self.user, self.request_id, self.attempt = user, request_id, attempt
        self.recorded = False


APPLYING: ContextVar[Applying | None] = ContextVar("pydfs_applying", default=None)


def pending() -> Applying | None:
    """The request a commit now records, if it is the first commit of its attempt."""
    applying = APPLYING.get()
    return None if applying is None or applying.recorded else applying


class AppliedElsewhere(Exception):
    """Another attempt of the request being served recorded it first: this transaction is
    rolled back, and the request is answered as that attempt was (``namenode.applied``)."""


class Applied(NamedTuple):
    """A request recorded as applied, by the attempt *attempt*, at *at* (wall clock), with
    the answer it gave (*status* and *body*), or None until that is recorded."""

    attempt: str
    at: float
    status: int | None
    body: bytes | None


class Requests(Protocol):
    """Requests applied recently (``Applying``): recorded by a write's commit, their answers
    by ``Store.answered``."""

    async def applied(self, user: str, request_id: str) -> Applied | None: ...
    async def prune(self, before: float, limit: int) -> int:
        """Forget at most *limit* requests applied before *before*; how many went."""


class Tx(Protocol):
    """One transaction: its repositories, and the generation of the tree's shape."""

    inodes: Inodes
    blocks: BlockMap
    users: Users
    datanodes: DataNodes
    uploads: Uploads
    leader: Leader
    restore: Restore
    requests: Requests

    async def generation(self) -> int: ...
    async def reshaped(self) -> None:
        """This transaction changes the tree's shape: bump the generation as it commits."""


class Store(Protocol):
    url: str
    shared: bool  # several name nodes may use the store at once (else one process has it)
    lost: int  # connections to the database server lost: a failover of it shows as some

    def read(self) -> AbstractAsyncContextManager[Tx]: ...
    def write(self, *, durable: bool = True) -> AbstractAsyncContextManager[Tx]:
        """One atomic transaction, durable once the block exits; an exception rolls it back.
        Soft state (upload leases) is written with *durable* false: committed, and a backend
        may make it durable only with the next durable commit, so that no caller waits for it,
        where a crash that takes it back takes the name node too (not across a failover)."""

    async def backup(self, dest: Path) -> BackupInfo:
        """Write a consistent copy of the metadata, checked, to the new file *dest*, while
        serving; ``InvalidArgument`` from a backend whose database is backed up by its own
        tools."""

    async def answered(self, user: str, request_id: str, status: int, body: bytes) -> None:
        """The answer of a request a write recorded (``Requests.applied`` tells it from now
        on), as soft state: every name node sharing the store sees it, but it may be lost
        with this process (a retry is then told ``AnswerLost``)."""

    async def aclose(self) -> None: ...
