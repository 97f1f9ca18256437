"""Symbolic links in the namespace: kept as given, never followed by the name node's walks
(what ``lstat`` sees), removed, moved and copied as links."""

import pytest

from pydfs import wire
from pydfs.errors import AlreadyExists, InvalidArgument, NotADirectory, PermissionDenied
from pydfs.namenode.auth import User

OWNER = User("alice", admin=True)
BOB = User("bob")


def put(ns, path):
    block = wire.StoredBlock(f"{1:032x}", 10, 1, ["dn-1"])
    return ns.commit_file(
        path, OWNER, replication=1, block_size=1024, blocks=[block], overwrite=False
    )


def test_a_link_is_stored_as_given_and_shown_with_its_target(ns):
    ns.mkdir("/d", OWNER)
    made = ns.symlink("/d/rel", "../x/./y", OWNER)
    assert (made.type, made.target, made.path, made.mode) == (
        "symlink",
        "../x/./y",
        "/d/rel",
        0o777,
    )
    ns.symlink("/d/dangling", "nowhere at all", OWNER)  # never resolved nor checked
    assert ns.readlink("/d/rel", OWNER) == "../x/./y"
    stat = ns.stat("/d/dangling", OWNER)
    assert (stat.type, stat.target, stat.blocks) == ("symlink", "nowhere at all", None)
    listed = {e.name: (e.type, e.target) for e in ns.listdir("/d", OWNER).entries}
    assert listed == {"dangling": ("symlink", "nowhere at all"), "rel": ("symlink", "../x/./y")}
    assert ns.listdir_page("/d", OWNER, limit=10).entries[0].target == "nowhere at all"


def test_a_link_is_never_followed_by_a_walk(ns):
    ns.mkdir("/real", OWNER)
    put(ns, "/real/f")
    ns.symlink("/via", "/real", OWNER)
    assert ns.stat("/via", OWNER).type == "symlink"  # lstat, not stat
    with pytest.raises(NotADirectory):
        ns.stat("/via/f", OWNER)
    with pytest.raises(NotADirectory):
        ns.mkdir("/via/sub", OWNER)
    with pytest.raises(AlreadyExists):  # a write to the link's path does not go through it
        put(ns, "/via")
    with pytest.raises(InvalidArgument):
        ns.readlink("/real/f", OWNER)
    with pytest.raises(InvalidArgument, match="does not follow"):  # no blocks, not empty content
        ns.stat("/via", OWNER, read=True)
    with pytest.raises(InvalidArgument, match="does not follow"):
        ns.checksum("/via", OWNER)


def test_bad_targets_and_taken_names_are_refused(ns):
    for target in ("", "a\0b", "x" * 4097, "é" * 2049):
        with pytest.raises(InvalidArgument):
            ns.symlink("/l", target, OWNER)
    ns.symlink("/l", "x" * 4096, OWNER)  # the longest
    with pytest.raises(AlreadyExists):
        ns.symlink("/l", "y", OWNER)
    with pytest.raises(AlreadyExists):
        ns.symlink("/", "y", OWNER)


def test_making_a_link_needs_write_and_search_on_the_parent(ns):
    ns.mkdir("/ro", OWNER, mode=0o755)
    with pytest.raises(PermissionDenied):
        ns.symlink("/ro/l", "t", BOB)
    ns.mkdir("/open", OWNER, mode=0o777)
    assert ns.symlink("/open/l", "t", BOB).owner == "bob"


def test_delete_move_and_copy_act_on_the_link_itself(ns):
    ns.mkdir("/d", OWNER)
    put(ns, "/d/f")
    ns.symlink("/l", "/d/f", OWNER)
    copied = ns.copy("/l", "/c", OWNER)
    assert (copied.type, copied.target) == ("symlink", "/d/f")
    moved = ns.move("/l", "/d/m", OWNER)
    assert (moved.type, moved.target) == ("symlink", "/d/f")
    assert ns.delete("/d/m", OWNER, type="file") == 0  # no file went: the link did
    assert ns.lookup("/d/m", OWNER) is None
    assert ns.stat("/d/f", OWNER).size == 10  # what it named stays
    ns.delete("/d", OWNER, recursive=True)
    assert ns.readlink("/c", OWNER) == "/d/f"  # now dangling
