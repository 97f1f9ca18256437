"""Recursive operations by a plain user: they go only where the user may list, and a refusal
names nothing below a directory the user could not list. Also: a trailing '/' makes no file,
and no name is made in a directory its maker may not search."""

import pytest

from pydfs import wire
from pydfs.errors import AlreadyExists, IsADirectory, NotADirectory, PermissionDenied
from pydfs.namenode.auth import User

ADMIN = User("admin", admin=True)
ALICE = User("alice")
BOB = User("bob")
HIDDEN = ("inner", "deep", "secret")


def put(ns, path, user):
    stored = [wire.StoredBlock(f"{abs(hash(path)):032x}", 10, 1, ["dn-1"])]
    return ns.commit_file(
        path, user, replication=1, block_size=1024, blocks=stored, overwrite=False
    )


@pytest.fixture
def tree(ns):
    """/shared (bob's, 0777) holds bob's file and alice's 0700 "hidden", which holds "inner"
    (made first, elsewhere, and moved in: the lowest id below /shared) with "deep" in it."""
    ns.chmod("/", 0o777, ADMIN)  # so that bob may remove /shared
    ns.mkdir("/shared", ADMIN, mode=0o777)
    ns.chown("/shared", "bob", "bob", ADMIN)
    ns.mkdir("/elsewhere", ADMIN, mode=0o777)
    ns.mkdir("/elsewhere/inner", ALICE, mode=0o700)
    put(ns, "/elsewhere/inner/deep", ALICE)
    put(ns, "/shared/bobs", BOB)
    ns.mkdir("/shared/hidden", ALICE, mode=0o700)
    ns.move("/elsewhere/inner", "/shared/hidden/inner", ALICE)
    ns.mkdir("/home/alice", ADMIN, parents=True)  # both 0755
    ns.chown("/home/alice", "alice", "alice", ADMIN)
    ns.mkdir("/home/alice/private", ALICE)
    ns.chmod("/home/alice/private", 0o700, ALICE)
    put(ns, "/home/alice/private/secret", ALICE)
    return ns


def refusal(call) -> str:
    with pytest.raises(PermissionDenied) as info:
        call()
    message = str(info.value)
    assert not [name for name in HIDDEN if name in message], message
    return message


def test_setrep_stops_at_a_directory_the_caller_cannot_list(tree):
    assert refusal(lambda: tree.setrep("/home/alice", 1, BOB)).startswith("/home/alice/private:")
    assert refusal(lambda: tree.setrep("/", 1, BOB))
    assert tree.stat("/home/alice/private/secret").replication == 1  # as it was
    assert tree.setrep("/shared/bobs", 3, BOB) == 1
    assert tree.setrep("/", 2, ADMIN) == 3


def test_rm_r_stops_at_a_directory_the_caller_cannot_list(tree):
    message = refusal(lambda: tree.delete("/shared", BOB, recursive=True))
    assert message.startswith("/shared/hidden:")
    assert tree.lookup("/shared/hidden/inner/deep") is not None
    assert tree.lookup("/shared/bobs") is not None
    # An empty directory needs no rights of its own to go, as with rm -r.
    tree.delete("/shared/hidden", ADMIN, recursive=True)
    tree.mkdir("/shared/empty", ALICE, mode=0o000)
    assert tree.delete("/shared", BOB, recursive=True) == 1


def test_chmod_and_chown_r_stop_at_a_directory_the_caller_cannot_list(tree):
    for call in (
        lambda: tree.chmod("/shared", 0o700, BOB, recursive=True),
        lambda: tree.chown("/shared", None, "bob", BOB, recursive=True),
    ):
        assert refusal(call).startswith("/shared/hidden:")
    assert tree.stat("/shared").mode == 0o777
    # In what is all hers, alice goes even where she took her own r and x away.
    tree.chmod("/home/alice/private", 0o000, ALICE)
    assert tree.chmod("/home/alice", 0o750, ALICE, recursive=True) == 3
    assert tree.stat("/home/alice/private/secret").mode == 0o750


def test_once_listable_the_entries_below_may_be_named(tree):
    tree.chmod("/shared/hidden", 0o755, ALICE)
    with pytest.raises(PermissionDenied, match=r"^/shared/hidden/inner: permission denied$"):
        tree.setrep("/shared", 1, BOB)
    tree.chmod("/shared/hidden/inner", 0o755, ALICE)
    with pytest.raises(PermissionDenied, match=r"^/shared/hidden/inner/deep: permission denied$"):
        tree.setrep("/shared", 1, BOB)  # w on each file
    with pytest.raises(PermissionDenied, match=r"^/shared/hidden/inner: only the owner"):
        tree.chmod("/shared", 0o700, BOB, recursive=True)  # the first not his


def test_a_trailing_slash_makes_no_file(ns):
    ns.mkdir("/d", ADMIN)
    ns.create_file("/f", ADMIN)
    for call in (
        lambda: ns.create_file("/d/name", ADMIN, directory=True),
        lambda: ns.create_file("/f", ADMIN, directory=True),
        lambda: ns.check_writable("/nodir", ADMIN, overwrite=True, directory=True),
        lambda: ns.check_writable("/f", ADMIN, overwrite=True, directory=True),
    ):
        with pytest.raises(NotADirectory, match="/: not a directory"):
            call()
    with pytest.raises(AlreadyExists):
        ns.create_file("/d", ADMIN, directory=True)
    with pytest.raises(IsADirectory):
        ns.check_writable("/d", ADMIN, overwrite=True, directory=True)
    assert ns.lookup("/d/name") is None and ns.lookup("/nodir") is None


def test_no_name_is_made_in_a_directory_its_maker_may_write_but_not_search(ns):
    ns.chmod("/", 0o777, ADMIN)
    ns.mkdir("/drop", ADMIN, mode=0o702)  # others: w, no x
    for make in (
        lambda: ns.create_file("/drop/t", BOB),
        lambda: ns.symlink("/drop/l", "x", BOB),
        lambda: put(ns, "/drop/c", BOB),
        lambda: ns.check_writable("/drop/c", BOB, overwrite=False),
    ):
        with pytest.raises(PermissionDenied):
            make()
    assert [e.name for e in ns.listdir("/drop", ADMIN).entries] == []
