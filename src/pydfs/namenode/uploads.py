"""Upload leases: a file being written, the blocks handed out for it, and their commit.

Leases live in memory only. A block is durable on its data nodes before the name node hears of it,
so a name node that crashes mid-upload forgets the lease; the writer's commit then fails cleanly,
and the data nodes' next block reports name the blocks as unknown, which sends them to the trash.

Each user may hold ``max_open`` uploads at once, and an upload lives at most ``lifetime`` seconds
however often it is renewed: open uploads hold blocks no file names, which only their commit or
their expiry frees. ``listing`` shows them to administrators.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydfs import paths, wire
from pydfs.errors import (
    Conflict,
    InsufficientNodes,
    InvalidArgument,
    LimitExceeded,
    NoSpace,
    PermissionDenied,
    ProtocolError,
    Unavailable,
)
from pydfs.namenode import placement
from pydfs.namenode.auth import User
from pydfs.namenode.membership import Membership
from pydfs.namenode.namespace import Namespace

MIN_BLOCK_SIZE = 4096
MAX_BLOCK_SIZE = 2**31
MAX_REPLICATION = 16


MAX_BATCH = 64
_SHA256 = re.compile("[0-9a-f]{64}")


@dataclass
class Upload:
    id: str
    path: str | None  # None until the commit of an upload from a batch names it
    user: User
    replication: int
    block_size: int
    overwrite: bool
    started: float
    expires: float
    targets: dict[str, list[str]] = field(default_factory=dict)  # block id → nodes it went to


class Uploads:
    def __init__(
        self,
        namespace: Namespace,
        membership: Membership,
        *,
        lease: float,
        lifetime: float = 86400.0,
        max_open: int = 256,
        on_commit: Callable[[list[wire.StoredBlock], int], None] | None = None,
        write_token: Callable[[str, list[wire.NodeRef]], str] = lambda block_id, targets: "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.namespace = namespace
        self.membership = membership
        self.lease = lease
        self.lifetime = lifetime  # seconds an upload may stay open, renewals included
        self.max_open = max_open  # uploads one user may hold at once
        self.clock = clock
        self.on_commit = on_commit  # (blocks, replication): lets healing see a short pipeline
        self.write_token = write_token  # signs the write token of a granted block
        self._uploads: dict[str, Upload] = {}
        self._open_by_user: dict[str, int] = {}

    def _room(self, user: User, wanted: int) -> int:
        """How many of *wanted* new uploads *user* may open (at least one, else it raises);
        also refuses while the name node waits for its data nodes after a start."""
        if (waiting := self.membership.starting(self.namespace.replication)) is not None:
            raise Unavailable(
                "name node is starting: waiting for data nodes "
                f"({waiting[0]} of {waiting[1]} reported); try again shortly"
            )
        room = self.max_open - self._open_by_user.get(user.name, 0)
        if room <= 0:
            raise LimitExceeded(
                f"{user.name} has {self.max_open} uploads open, the most allowed: "
                "finish or abandon some first"
            )
        return min(room, wanted)

    def start(self, req: wire.UploadRequest, user: User) -> wire.UploadGrant:
        path = paths.normalize(req.path)
        replication, block_size = self._shape(req.replication, req.block_size)
        # Fail early on what the commit would refuse anyway.
        self.namespace.check_writable(
            path, user, overwrite=req.overwrite, directory=paths.names_directory(req.path)
        )
        self._room(user, 1)
        return self._open(path, user, replication, block_size, req.overwrite)

    def start_batch(self, req: wire.UploadBatchRequest, user: User) -> wire.UploadBatch:
        """Uploads whose paths their commits will name (and check then); fewer than asked
        for when the caller is near its limit of open uploads."""
        if not 1 <= req.count <= MAX_BATCH:
            raise InvalidArgument(f"a batch holds 1 to {MAX_BATCH} uploads")
        replication, block_size = self._shape(req.replication, req.block_size)
        count = self._room(user, req.count)
        return wire.UploadBatch(
            [self._open(None, user, replication, block_size, True) for _ in range(count)]
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

    def _open(
        self, path: str | None, user: User, replication: int, block_size: int, overwrite: bool
    ) -> wire.UploadGrant:
        now = self.clock()
        upload = Upload(
            id=secrets.token_hex(16),
            path=path,
            user=user,
            replication=replication,
            block_size=block_size,
            overwrite=overwrite,
            started=now,
            expires=now + min(self.lease, self.lifetime),
        )
        block = self._allocate(upload, frozenset())
        self._uploads[upload.id] = upload
        self._open_by_user[user.name] = self._open_by_user.get(user.name, 0) + 1
        return wire.UploadGrant(upload.id, path or "", replication, block_size, block)

    def _get(self, upload_id: str, user: User) -> Upload:
        upload = self._uploads.get(upload_id)
        if upload is None:
            raise Conflict("upload unknown or expired (was the name node restarted?)")
        if upload.user.name != user.name:
            raise PermissionDenied("this upload belongs to another user")
        now = self.clock()
        if upload.expires < now:  # ran out, though not swept yet
            self._forget(upload, keep=set())
            if now - upload.started >= self.lifetime:
                raise Conflict(f"upload expired: uploads stay open {self.lifetime:g} s at most")
            raise Conflict("upload unknown or expired (was the name node restarted?)")
        upload.expires = min(now + self.lease, upload.started + self.lifetime)
        return upload

    def _allocate(self, upload: Upload, exclude: frozenset[str]) -> wire.BlockGrant:
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
        block_id = secrets.token_hex(16)
        upload.targets[block_id] = targets
        refs = [self.membership.ref(t) for t in targets]
        return wire.BlockGrant(block_id, refs, self.write_token(block_id, refs))

    def renew(self, upload_id: str, user: User) -> None:
        """Extend a lease whose writer is still at work (it raises if the lease is gone)."""
        self._get(upload_id, user)

    def allocate(self, upload_id: str, req: wire.BlockAllocRequest, user: User) -> wire.BlockGrant:
        return self._allocate(self._get(upload_id, user), frozenset(req.exclude))

    def commit(self, upload_id: str, req: wire.CommitRequest, user: User) -> wire.FileStatus:
        upload = self._get(upload_id, user)
        path, overwrite = upload.path, upload.overwrite
        if path is None:
            if req.path is None:
                raise InvalidArgument("the commit of an upload from a batch names its file")
            path, overwrite = paths.normalize(req.path), req.overwrite
            if paths.names_directory(req.path):  # refused (as at start): no file named "d/"
                self.namespace.check_writable(path, user, overwrite=overwrite, directory=True)
        elif req.path is not None and paths.normalize(req.path) != path:
            raise InvalidArgument(f"this upload writes {path}, not {req.path}")
        seen: set[str] = set()
        for block in req.blocks:
            targets = upload.targets.get(block.block_id)
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
        status = self.namespace.commit_file(
            path,
            upload.user,
            replication=upload.replication,
            block_size=upload.block_size,
            blocks=req.blocks,
            overwrite=overwrite,
            sha256=req.sha256,
        )
        self._forget(upload, keep=seen)
        if self.on_commit is not None:
            self.on_commit(req.blocks, upload.replication)
        return status

    def abort(self, upload_id: str, user: User) -> None:
        upload = self._uploads.get(upload_id)
        if upload is not None and upload.user.name == user.name:
            self._forget(upload, keep=set())

    def _forget(self, upload: Upload, keep: set[str]) -> None:
        del self._uploads[upload.id]
        left = self._open_by_user[upload.user.name] - 1
        if left:
            self._open_by_user[upload.user.name] = left
        else:
            del self._open_by_user[upload.user.name]
        self.namespace.trash_blocks(
            (node, block)
            for block, nodes in upload.targets.items()
            if block not in keep
            for node in nodes
        )

    def expire(self) -> int:
        now = self.clock()
        stale = [u for u in self._uploads.values() if u.expires < now]
        for upload in stale:
            self._forget(upload, keep=set())
        return len(stale)

    def __len__(self) -> int:
        """Uploads in progress."""
        return len(self._uploads)

    def in_flight(self) -> set[str]:
        return set(self.granted())

    def granted(self) -> dict[str, list[str]]:
        """Each block of an upload in flight, and the data nodes its grant named."""
        return {b: nodes for u in self._uploads.values() for b, nodes in u.targets.items()}

    def listing(self) -> wire.UploadList:
        """Every open upload, the oldest first: whose, where to, how old, what it holds."""
        now = self.clock()
        return wire.UploadList(
            [
                wire.OpenUpload(
                    id=u.id,
                    user=u.user.name,
                    path=u.path,
                    age=now - u.started,
                    expires_in=u.expires - now,
                    blocks=len(u.targets),
                    granted=len(u.targets) * u.block_size,
                    replication=u.replication,
                )
                for u in sorted(self._uploads.values(), key=lambda u: u.started)
            ]
        )
