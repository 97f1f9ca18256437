"""Upload leases: a file being written, the blocks handed out for it, and their commit.

Leases live in the store, so that every name node knows them, and are soft state
(``store.write(durable=False)``): SQLite answers before they are flushed, for the machine whose
crash could take one back takes the name node with it; the writer's commit then fails cleanly,
and the data nodes' next block reports name the blocks as unknown, which sends them to the
trash. PostgreSQL commits them durably all the same: a failover to a standby must carry them,
or every write under way during it would fail. The commit itself is durable, and closes the
lease in its own transaction.

Each user may hold ``max_open`` uploads at once, and an upload lives at most ``lifetime`` seconds
however often it is renewed: open uploads hold blocks no file names, which only their commit or
their expiry frees. ``listing`` shows them to administrators.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from pydfs import paths, wire
from pydfs.errors import (
    Conflict,
    InsufficientNodes,
    InvalidArgument,
    LimitExceeded,
    NoSpace,
    PermissionDenied,
    ProtocolError,
    PydfsError,
    Unavailable,
)
from pydfs.ids import new_id
from pydfs.namenode import placement
from pydfs.namenode.auth import User
from pydfs.namenode.commits import Commits, FileCommit
from pydfs.namenode.membership import Membership
from pydfs.namenode.store import Tx
from pydfs.namenode.store.interface import UploadRow
from pydfs.namenode.tree import Walk

MIN_BLOCK_SIZE = 4096
MAX_BLOCK_SIZE = 2**31
MAX_REPLICATION = 16


MAX_BATCH = 64
_SHA256 = re.compile("[0-9a-f]{64}")


class Uploads:
    def __init__(
        self,
        commits: Commits,
        membership: Membership,
        *,
        lease: float,
        lifetime: float = 86400.0,
        max_open: int = 256,
        on_commit: Callable[[list[wire.StoredBlock], int], None] | None = None,
        write_token: Callable[[str, list[wire.NodeRef]], str] = lambda block_id, targets: "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.commits = commits
        self.namespace = commits.namespace
        self.membership = membership
        self.store = self.namespace.store
        self.lease = lease
        self.lifetime = lifetime  # seconds an upload may stay open, renewals included
        self.max_open = max_open  # uploads one user may hold at once
        self.clock = clock  # the wall clock: leases are shared by every name node
        self.on_commit = on_commit  # (blocks, replication): lets healing see a short pipeline
        self.write_token = write_token  # signs the write token of a granted block

    async def _room(self, tx: Tx, user: User, wanted: int, *, share: bool = False) -> int:
        """How many of *wanted* new uploads *user* may open (at least one, else it raises);
        with *share* (leases fetched ahead), at most half the room left, so that the user's
        other clients, which keep leases of their own ahead, find some too. Also refuses
        while the name node waits for its data nodes after a start."""
        if (waiting := self.membership.starting(self.namespace.replication)) is not None:
            raise Unavailable(
                "name node is starting: waiting for data nodes "
                f"({waiting[0]} of {waiting[1]} reported); try again shortly"
            )
        await tx.users.lock(f"uploads:{user.name}")  # the count holds across name nodes
        room = self.max_open - await tx.uploads.open_by(user.name)
        if room <= 0:
            raise LimitExceeded(
                f"{user.name} has {self.max_open} uploads open, the most allowed: "
                "finish or abandon some first"
            )
        return min(max(1, room // 2) if share else room, wanted)

    async def start(self, req: wire.UploadRequest, user: User) -> wire.UploadGrant:
        path = paths.normalize(req.path)
        replication, block_size = self._shape(req.replication, req.block_size)
        # Fail early on what the commit would refuse anyway.
        await self.commits.check_writable(
            path, user, overwrite=req.overwrite, directory=paths.names_directory(req.path)
        )
        async with self.store.write(durable=False) as tx:
            await self._room(tx, user, 1)
            return await self._open(tx, path, user, replication, block_size, req.overwrite)

    async def start_batch(self, req: wire.UploadBatchRequest, user: User) -> wire.UploadBatch:
        """Uploads whose paths their commits will name (and check then); fewer than asked
        for when the caller is near its limit of open uploads (half the room left, at most)."""
        if not 1 <= req.count <= MAX_BATCH:
            raise InvalidArgument(f"a batch holds 1 to {MAX_BATCH} uploads")
        replication, block_size = self._shape(req.replication, req.block_size)
        async with self.store.write(durable=False) as tx:
            count = await self._room(tx, user, req.count, share=True)
            return wire.UploadBatch(
                [
                    await self._open(tx, None, user, replication, block_size, True)
                    for _ in range(count)
                ]
            )

    def _shape(self, replication: int | None, block_size: int | None) -> tuple[int, int]:
        replication = self.namespace.replication if replication is None else replication
        block_size = self.namespace.block_size if block_size is None else block_size
        if not 1 <= replication <= MAX_REPLICATION:
            raise InvalidArgument(f"replication must be between 1 and {MAX_REPLICATION}")
        if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE:
            raise InvalidArgument(
                f"block size must be between {MIN_BLOCK_SIZE} and {MAX_BLOCK_SIZE} bytes"
            )
        return replication, block_size

    async def _open(
        self,
        tx: Tx,
        path: str | None,
        user: User,
        replication: int,
        block_size: int,
        overwrite: bool,
    ) -> wire.UploadGrant:
        now = self.clock()
        upload = UploadRow(
            id=new_id(spread=True),
            user=user.name,
            path=path,
            replication=replication,
            block_size=block_size,
            overwrite=overwrite,
            started=now,
            expires=now + min(self.lease, self.lifetime),
        )
        await tx.uploads.open(upload)
        block = await self._allocate(tx, upload, frozenset())
        return wire.UploadGrant(upload.id, path or "", replication, block_size, block)

    async def _get(self, tx: Tx, upload_id: str, user: User, *, renew: bool = True) -> UploadRow:
        """The open upload *upload_id* of *user*, its lease extended (with *renew*)."""
        upload = await tx.uploads.get(upload_id)
        if upload is None:
            raise Conflict("upload unknown or expired (was the name node restarted?)")
        if upload.user != user.name:
            raise PermissionDenied("this upload belongs to another user")
        now = self.clock()
        if upload.expires < now:  # ran out, though not swept yet
            if now - upload.started >= self.lifetime:
                raise _Expired(
                    upload_id, f"upload expired: uploads stay open {self.lifetime:g} s at most"
                )
            raise _Expired(upload_id, "upload unknown or expired (was the name node restarted?)")
        if renew:
            await tx.uploads.renew(upload_id, min(now + self.lease, upload.started + self.lifetime))
        return upload

    async def _allocate(
        self, tx: Tx, upload: UploadRow, exclude: frozenset[str]
    ) -> wire.BlockGrant:
        targets = placement.choose(
            self.membership.candidates(), upload.replication, upload.block_size, exclude=exclude
        )
        if not targets:
            live = [n for n in self.membership.live() if n.id not in exclude]
            if not live:
                raise InsufficientNodes(
                    f"no live data node to write to ({len(exclude)} failed during this upload)"
                )
            raise NoSpace(
                f"no live data node has room for a block of {upload.block_size} bytes "
                f"(most free: {max(n.free for n in live)} bytes)"
            )
        block_id = new_id(spread=True)
        await tx.uploads.grant(upload.id, block_id, targets)
        refs = [self.membership.ref(t) for t in targets]
        return wire.BlockGrant(block_id, refs, self.write_token(block_id, refs))

    @asynccontextmanager
    async def _sweeping(self) -> AsyncIterator[None]:
        """A lease found run out is gone at once, not at the next sweep."""
        try:
            yield
        except _Expired as exc:
            async with self.store.write(durable=False) as tx:
                if await tx.uploads.get(exc.upload_id) is not None:
                    await self._forget(tx, exc.upload_id)
            raise

    async def renew(self, upload_id: str, user: User) -> None:
        """Extend a lease whose writer is still at work (it raises if the lease is gone)."""
        async with self._sweeping(), self.store.write(durable=False) as tx:
            await self._get(tx, upload_id, user)

    async def allocate(
        self, upload_id: str, req: wire.BlockAllocRequest, user: User
    ) -> wire.BlockGrant:
        async with self._sweeping(), self.store.write(durable=False) as tx:
            upload = await self._get(tx, upload_id, user)
            return await self._allocate(tx, upload, frozenset(req.exclude))

    async def commit(self, upload_id: str, req: wire.CommitRequest, user: User) -> wire.FileStatus:
        """Make the upload's file name the blocks written, closing the lease in the same
        transaction (a second commit of it finds no lease); granted blocks it left out go to
        the trash."""
        async with self._sweeping():
            return await self._commit(upload_id, req, user)

    async def _commit(self, upload_id: str, req: wire.CommitRequest, user: User) -> wire.FileStatus:
        async with self.namespace.tree.writing() as walk:
            item = wire.UploadCommit(upload_id, req)
            upload, granted, seen, allowed = await self._check_one(walk, item, user)
            await walk.tx.uploads.close(upload_id)
            await walk.tx.blocks.trash(_unused(granted, seen))
            status = await self.commits.apply_commit(walk, allowed)
        if self.on_commit is not None:
            self.on_commit(req.blocks, upload.replication)
        return status

    async def commit_many(self, req: wire.CommitManyRequest, user: User) -> wire.CommitManyReply:
        """Commit many uploads in one transaction (one fsync), each file as ``commit`` would
        but on its own: a file refused (no such directory, permission denied, exists, a lease
        gone) is reported, nothing of it applied, and the others go on. Every upload named is
        closed, so a refused file's blocks go to the trash at once. An error of the store
        (5xx) fails the whole batch, and then none of it is applied."""
        if not 1 <= len(req.commits) <= wire.MAX_COMMIT_BATCH:
            raise InvalidArgument(f"a batch commits 1 to {wire.MAX_COMMIT_BATCH} uploads")
        if len({c.upload_id for c in req.commits}) != len(req.commits):
            raise ProtocolError("a batch names an upload twice")
        results: list[wire.CommitResult] = []
        done: list[wire.CommitRequest] = []
        replication: list[int] = []
        async with self.namespace.tree.writing() as walk:
            tx = walk.tx
            for item in req.commits:
                try:
                    upload, granted, seen, allowed = await self._check_one(walk, item, user)
                except PydfsError as exc:
                    if exc.status >= 500:  # the store failed: not this file's doing
                        raise
                    results.append(wire.CommitResult(error=wire.ErrorBody(exc.code, exc.message)))
                    row = await tx.uploads.get(item.upload_id)
                    if row is not None and row.user == user.name:
                        await self._forget(tx, item.upload_id)
                    continue
                await tx.uploads.close(item.upload_id)
                await tx.blocks.trash(_unused(granted, seen))
                status = await self.commits.apply_commit(walk, allowed)
                results.append(wire.CommitResult(status=status))
                done.append(item.commit)
                replication.append(upload.replication)
        if self.on_commit is not None:
            for commit, copies in zip(done, replication, strict=True):
                self.on_commit(commit.blocks, copies)
        return wire.CommitManyReply(results)

    async def _check_one(
        self, walk: Walk, item: wire.UploadCommit, user: User
    ) -> tuple[UploadRow, dict[str, list[str]], set[str], FileCommit]:
        """What ``commit`` checks of one file, in *walk*'s transaction, changing nothing."""
        req = item.commit
        upload = await self._get(walk.tx, item.upload_id, user, renew=False)
        granted = await walk.tx.uploads.granted(item.upload_id)
        path, overwrite, directory = _target(upload, req)
        seen = _check_blocks(upload, req, granted)
        allowed = await self.commits.check_commit(
            walk,
            path,
            user,
            replication=upload.replication,
            block_size=upload.block_size,
            blocks=req.blocks,
            overwrite=overwrite,
            sha256=req.sha256,
            expect=req.expect,
            keep=req.keep,
            directory=directory,
        )
        return upload, granted, seen, allowed

    async def abort(self, upload_id: str, user: User) -> None:
        async with self.store.write(durable=False) as tx:
            upload = await tx.uploads.get(upload_id)
            if upload is not None and upload.user == user.name:
                await self._forget(tx, upload_id)

    @staticmethod
    async def _forget(tx: Tx, upload_id: str) -> None:
        """Close an upload and trash what its grants put on the nodes, unless a commit (through
        another name node, at the lease's very end) made those blocks a file's meanwhile."""
        granted = await tx.uploads.granted(upload_id)
        await tx.uploads.close(upload_id)
        await tx.blocks.trash_unknown(_unused(granted, set()))

    async def expire(self) -> int:
        async with self.store.write(durable=False) as tx:
            stale = await tx.uploads.expired(self.clock())
            for upload_id in stale:
                await self._forget(tx, upload_id)
        return len(stale)

    async def count(self) -> int:
        """Uploads in progress."""
        async with self.store.read() as tx:
            return len(await tx.uploads.all())

    async def listing(self) -> wire.UploadList:
        """Every open upload, the oldest first: whose, where to, how old, what it holds."""
        now = self.clock()
        async with self.store.read() as tx:
            rows = await tx.uploads.all()
        return wire.UploadList(
            [
                wire.OpenUpload(
                    id=u.id,
                    user=u.user,
                    path=u.path,
                    age=now - u.started,
                    expires_in=u.expires - now,
                    blocks=blocks,
                    granted=blocks * u.block_size,
                    replication=u.replication,
                )
                for u, blocks in rows
            ]
        )


def _target(upload: UploadRow, req: wire.CommitRequest) -> tuple[str, bool, bool]:
    """The file a commit of *upload* writes, whether it may replace one, and whether it was
    named as a directory ("d/", which no file may be)."""
    if upload.path is not None:
        if req.path is not None and paths.normalize(req.path) != upload.path:
            raise InvalidArgument(f"this upload writes {upload.path}, not {req.path}")
        return upload.path, upload.overwrite, False
    if req.path is None:
        raise InvalidArgument("the commit of an upload from a batch names its file")
    return paths.normalize(req.path), req.overwrite, paths.names_directory(req.path)


def _check_blocks(
    upload: UploadRow, req: wire.CommitRequest, granted: dict[str, list[str]]
) -> set[str]:
    """The blocks a commit names, each granted to *upload*, once, with the nodes it was sent
    to and a possible size and CRC; returns their ids."""
    seen: set[str] = set()
    for block in req.blocks:
        targets = granted.get(block.block_id)
        if targets is None or block.block_id in seen:
            raise ProtocolError(f"block {block.block_id} does not belong to this upload")
        if not block.nodes or not set(block.nodes) <= set(targets):
            raise ProtocolError(f"block {block.block_id} names nodes it was not sent to")
        if not 0 <= block.size <= upload.block_size:
            raise ProtocolError(f"block {block.block_id} has an impossible size")
        if not 0 <= block.crc < 2**32:
            raise ProtocolError(f"block {block.block_id} has an impossible CRC32C")
        seen.add(block.block_id)
    if req.sha256 is not None and not _SHA256.fullmatch(req.sha256):
        raise ProtocolError("sha256 must be 64 lowercase hex digits")
    _check_kept(req)
    return seen


def _check_kept(req: wire.CommitRequest) -> None:
    """Kept blocks must be among those *expect* names (the commit's transaction checks that the
    file names them now), each in a place of its own in the new version."""
    if not req.keep:
        return
    if req.expect is None or not {k.block_id for k in req.keep} <= set(req.expect):
        raise ProtocolError("a commit keeps only blocks of the version it expects")
    places = {k.index for k in req.keep}
    if len(places) != len(req.keep) or not places <= set(range(len(req.blocks) + len(req.keep))):
        raise ProtocolError("kept blocks need distinct places within the file")


def _unused(granted: dict[str, list[str]], used: set[str]) -> list[tuple[str, str]]:
    """(node, block) replicas of granted blocks a commit left out."""
    return [
        (node, block) for block, nodes in granted.items() if block not in used for node in nodes
    ]


class _Expired(Conflict):
    def __init__(self, upload_id: str, message: str) -> None:
        super().__init__(message)
        self.upload_id = upload_id
