"""What a metadata backend implements: a store that opens transactions, and the repositories a
transaction holds. The name node's modules speak only this; each backend owns its dialect, its
migrations and its durability.

Every method is ``async``: the embedded SQLite backend answers without suspending, a networked
one (PostgreSQL) awaits its server. A transaction sees its own changes, and ``Store.write()``
returns only once its commit is durable: what a caller acknowledges after it survives a crash.
A ``Store.read()`` sees only committed changes, and its caller may acknowledge what it read: a
backend whose commits become visible before they are durable makes a read wait for them (not for
soft state's, see ``Store.write``).

The namespace caches directories; a backend keeps a *generation* that every write reshaping the
tree (renames, deletes of directories, modes, owners) bumps, and that every name node can read,
so that a cache is dropped when any name node reshaped the tree.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
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
    async def entries(self, parent: int) -> list[Entry]:
        """The children of *parent*, sorted by name."""

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

    async def insert(self, new: NewInode, *, inode_id: int | None = None) -> int:
        """A new inode's id (*inode_id*, or a fresh one); ``AlreadyExists`` if the parent
        holds the name."""

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


class Tx(Protocol):
    """One transaction: its repositories, and the generation of the tree's shape."""

    inodes: Inodes
    blocks: BlockMap
    users: Users
    datanodes: DataNodes
    uploads: Uploads

    async def generation(self) -> int: ...
    async def reshaped(self) -> None:
        """This transaction changes the tree's shape: bump the generation as it commits."""


class Store(Protocol):
    url: str

    def read(self) -> AbstractAsyncContextManager[Tx]: ...
    def write(self, *, durable: bool = True) -> AbstractAsyncContextManager[Tx]:
        """One atomic transaction, durable once the block exits; an exception rolls it back.
        Soft state (upload leases) is written with *durable* false: committed, but made
        durable only with the next durable commit, so that no caller waits for it."""

    async def aclose(self) -> None: ...
