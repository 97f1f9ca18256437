"""What the namespace does for ``pydfs mount``: rename(2) (a move that never goes into an
existing directory), setting a modification time, and a commit that replaces a file only if it
is still the version its writer started from."""

import pytest
from tests.unit.namenode.test_uploads import live, make_uploads, stored

from pydfs import wire
from pydfs.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, PermissionDenied
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
