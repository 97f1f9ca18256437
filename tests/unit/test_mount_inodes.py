"""The mount's inode numbers: what a change made through the mount does to them."""

from __future__ import annotations

import pytest

pytest.importorskip("pyfuse3")

from pydfs import wire
from pydfs.mount.inodes import Inodes


def version(block: str) -> wire.FileStatus:
    return wire.FileStatus(
        "/f", "f", "file", 10, 1.0, 1.0, "u", blocks=[wire.BlockInfo(block, 10, 0)]
    )


def test_changes_under_a_pinned_reader_leave_no_number_nothing_can_reach() -> None:
    inodes = Inodes("/", None, 1.0)  # no identity: no attributes are asked for
    old = inodes.remember("/f", version("v0"), lookup=True)
    for n in range(1, 6):  # a writer on the old number commits five times, a reader pinned
        inodes.changed(old.ino, version(f"v{n}"), pinned=True)
    at_f = [node.ino for node in inodes._nodes.values() if node.path == "/f"]
    assert len(at_f) == 2  # the old number, and one the kernel has not looked up yet
    new = inodes.ino_of("/f")
    assert new is not None and new != old.ino
    assert inodes.node(new).known == version("v5")
    inodes.changed(old.ino, version("v6"))  # the reader closed: the path is the old number's
    assert inodes.ino_of("/f") == old.ino
    assert new not in inodes._nodes  # never looked up: dropped, no forget will come for it
    inodes.forget(old.ino, 1)
    assert inodes._nodes.keys() == {1}  # only the root


def test_a_number_the_kernel_looked_up_is_kept_until_it_forgets_it() -> None:
    inodes = Inodes("/", None, 1.0)
    old = inodes.remember("/f", version("v0"), lookup=True)
    inodes.changed(old.ino, version("v1"), pinned=True)
    seen = inodes.remember("/f", version("v1"), lookup=True)  # the kernel looks the new one up
    inodes.changed(old.ino, version("v2"), pinned=True)  # it may hold v1 pages: not reused
    assert inodes.ino_of("/f") not in (old.ino, seen.ino)
    assert seen.ino in inodes._nodes
    inodes.forget(seen.ino, 1)
    assert seen.ino not in inodes._nodes


def test_a_change_of_attributes_only_leaves_the_path_its_number() -> None:
    inodes = Inodes("/", None, 1.0)
    old = inodes.remember("/f", version("v0"), lookup=True)
    inodes.changed(old.ino, version("v1"), pinned=True)
    new = inodes.ino_of("/f")
    chmod = version("v1")
    chmod.mode = 0o600
    inodes.changed(old.ino, chmod, pinned=True)  # the writer, on the old number, chmods
    assert inodes.ino_of("/f") == new
    assert inodes.node(new).known == chmod


def test_a_number_the_kernel_never_saw_goes_with_its_file() -> None:
    inodes = Inodes("/", None, 1.0)
    old = inodes.remember("/f", version("v0"), lookup=True)
    inodes.changed(old.ino, version("v1"), pinned=True)
    new = inodes.ino_of("/f")
    inodes.removed("/f")  # unlinked through this mount
    assert new not in inodes._nodes
    assert old.ino in inodes._nodes  # the kernel holds it: it goes when the kernel forgets it
    inodes.forget(old.ino, 1)
    assert inodes._nodes.keys() == {1}
