"""What the namespace does for ``pydfs mount``: rename(2) (a move that never goes into an
existing directory), setting a modification time, and a commit that replaces a file only if it
is still the version its writer started from."""

import pytest
from tests.unit.namenode.test_uploads import live, make_uploads, stored, trash

from pydfs import wire
from pydfs.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ProtocolError,
)
from pydfs.namenode.auth import User

ALICE = User("alice")
BOB = User("bob")


def test_a_move_not_into_names_the_target_exactly(ns):
    ns.mkdir("/src")
    ns.mkdir("/dst")
    with pytest.raises(AlreadyExists):  # a directory stands there: never moved inside it
        ns.move("/src", "/dst", into=False)
    assert sorted(e.name for e in ns.listdir("/").entries) == ["dst", "src"]
    assert ns.move("/src", "/new", into=False).path == "/new"
    assert ns.move("/new", "/dst").path == "/dst/new"  # mv, as before


def test_set_mtime_by_owner_writer_or_admin(ns):
    ns.mkdir("/d")
    ns.chown("/d", "alice", None)
    assert ns.set_mtime("/d", 1_000_000_000.5, ALICE).mtime == 1_000_000_000.5
    assert ns.stat("/d").mtime == 1_000_000_000.5
    with pytest.raises(PermissionDenied):
        ns.set_mtime("/d", 1.0, BOB)
    ns.chmod("/d", 0o757, ALICE)
    assert ns.set_mtime("/d", 2.0, BOB).mtime == 2.0  # may write it: may touch it
    assert ns.set_mtime("/d", 3.0, User("root-ish", admin=True)).mtime == 3.0
    for bad in (float("inf"), float("nan"), 1e12):
        with pytest.raises(InvalidArgument):
            ns.set_mtime("/d", bad, ALICE)


def test_a_commit_expecting_a_version_replaces_only_that_version(ns):
    live(ns, "dn-1")
    uploads = make_uploads(ns, ns.membership, lease=600)

    def commit(path, expect):
        grant = uploads.start(wire.UploadRequest(path), ALICE)
        request = wire.CommitRequest([stored(grant.block)], expect=expect)
        return uploads.commit(grant.upload_id, request, ALICE)

    ns.mkdir("/d")
    ns.chmod("/d", 0o777)
    ns.create_file("/d/f", ALICE)
    first = commit("/d/f", [])  # still the empty file it was
    blocks = [b.id for b in first.blocks]
    with pytest.raises(Conflict):
        commit("/d/f", [])  # replaced meanwhile
    assert [b.id for b in ns.stat("/d/f").blocks] == blocks
    ns.move("/d/f", "/d/g")
    with pytest.raises(Conflict):
        commit("/d/f", blocks)  # moved away: not made again
    with pytest.raises(NotFound):
        ns.stat("/d/f")
    assert [b.id for b in commit("/d/g", blocks).blocks] != blocks
    assert commit("/d/g", None).size == 100  # no condition: as before


def test_a_commit_keeps_blocks_of_the_version_it_replaces_and_no_others(ns):
    """A writer that changed part of a file sends only the blocks it changed and keeps the
    others by id: never a block of another file, nor of a version since replaced."""
    live(ns, "dn-1")
    uploads = make_uploads(ns, ns.membership, lease=600)
    bs = 4096

    def commit(path, sizes, expect=None, keep=()):
        grant = uploads.start(wire.UploadRequest(path, block_size=bs), ALICE)
        grants = [grant.block]
        for _ in sizes[1:]:
            grants.append(uploads.allocate(grant.upload_id, wire.BlockAllocRequest(), ALICE))
        written = [stored(g, size) for g, size in zip(grants, sizes, strict=True)]
        keep = [wire.KeptBlock(i, b) for i, b in keep]
        request = wire.CommitRequest(written, expect=expect, keep=keep)
        return uploads.commit(grant.upload_id, request, ALICE)

    def ids(path):
        return [b.id for b in ns.stat(path).blocks]

    ns.mkdir("/d")
    ns.chmod("/d", 0o777)
    a, b, c = (blk.id for blk in commit("/d/f", [bs, bs, 100]).blocks)
    changed = commit("/d/f", [bs], expect=[a, b, c], keep=[(0, a), (2, c)])
    assert [blk.id for blk in changed.blocks][::2] == [a, c]
    new = changed.blocks[1].id
    assert new not in (a, b, c) and changed.size == 2 * bs + 100
    assert ids("/d/f") == [a, new, c]
    gone = {block for _, block in trash(ns)}
    assert b in gone and not gone & {a, c}  # the kept blocks keep their replicas
    appended = commit("/d/f", [bs, 50], expect=[a, new, c], keep=[(0, a), (1, new)])
    assert ids("/d/f")[:2] == [a, new] and appended.size == 3 * bs + 50

    (other,) = (blk.id for blk in commit("/d/g", [bs]).blocks)
    current = ids("/d/f")
    with pytest.raises(ProtocolError):  # not among the blocks the commit expects
        commit("/d/f", [100], expect=current, keep=[(0, other)])
    with pytest.raises(Conflict):  # expecting another file's blocks: not what the file names
        commit("/d/f", [100], expect=[other], keep=[(0, other)])
    with pytest.raises(ProtocolError):  # no version named: nothing to keep from
        commit("/d/f", [100], keep=[(0, a)])
    with pytest.raises(InvalidArgument):  # a short block before the last: bytes would shift
        commit("/d/f", [100], expect=current, keep=[(1, a), (2, current[2])])
    assert ids("/d/f") == current and ids("/d/g") == [other]

    commit("/d/f", [bs, 10], expect=current)  # replaced meanwhile (another writer's commit)
    with pytest.raises(Conflict):
        commit("/d/f", [100], expect=current, keep=[(0, a)])
    assert a not in ids("/d/f")
