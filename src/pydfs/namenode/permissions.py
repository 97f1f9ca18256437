"""POSIX permission checks on inodes: the bits, the sticky rule, and which part of a subtree a
recursive operation may enter."""

from __future__ import annotations

from pydfs.errors import PermissionDenied
from pydfs.namenode.auth import User
from pydfs.namenode.store import Inode

R, W, X = 4, 2, 1
STICKY = 0o1000
MODE_BITS = 0o1777


def allowed(user: User | None, owner: str, group: str, mode: int, want: int) -> bool:
    """May *user* have the *want* bits (R|W|X) on an inode? ``None`` is the name node itself."""
    if user is None or user.admin:
        return True
    if user.name == owner:
        bits = mode >> 6
    elif user.in_group(group):
        bits = mode >> 3
    else:
        bits = mode
    return bits & want == want


def check(user: User | None, node: Inode, want: int, path: str) -> None:
    if not allowed(user, node.owner, node.group, node.mode, want):
        raise PermissionDenied(f"{path}: permission denied")


def check_sticky(user: User | None, parent: Inode, node: Inode, path: str) -> None:
    """In a sticky directory (such as /tmp) only an entry's owner may remove or rename it."""
    sticky = parent.mode & STICKY and user is not None and not user.admin
    if sticky and user is not None and user.name not in (node.owner, parent.owner):
        raise PermissionDenied(f"{path}: permission denied (sticky directory)")


def enterable(
    subtree: list[Inode], user: User | None, *, want: int, owned: bool = False
) -> tuple[list[Inode], Inode | None]:
    """Of *subtree* (its root first, parents before children), what a recursive operation by
    *user* reaches, and the first directory it cannot enter that holds entries (if any, the
    operation is refused, naming that directory).

    The walk enters only the directories that grant *user* the *want* bits (r and x at least,
    so it never reads a directory the user could not list), or with *owned* those the user
    owns. The refusal names a directory the user sees already (in the directory the walk came
    from, or as the path given), never one below it. So ``setrep 1 /`` as a plain user answers
    ``/user/alice: permission denied``, not the names of alice's files. (HDFS's shell, walking
    the same way, names the same directory but changes the rest.)
    """
    if user is None or user.admin:
        return subtree, None

    def enters(node: Inode) -> bool:
        return node.is_dir and (
            allowed(user, node.owner, node.group, node.mode, want)
            or (owned and node.owner == user.name)
        )

    root = subtree[0]
    reached = [root]
    opened = {root.id} if enters(root) else set()
    parents = {node.parent for node in subtree[1:]}
    for node in subtree[1:]:
        if node.parent in opened:
            reached.append(node)
            if enters(node):
                opened.add(node.id)
    closed = [n for n in reached if n.is_dir and n.id not in opened and n.id in parents]
    return reached, min(closed, key=lambda n: n.id) if closed else None
