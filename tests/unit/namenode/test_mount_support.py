"""What the namespace does for ``pydfs mount``: rename(2) (a move that never goes into an
existing directory) and setting a modification time."""

import pytest

from pydfs.errors import AlreadyExists, InvalidArgument, PermissionDenied
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
