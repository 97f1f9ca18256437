"""Inodes and block placements as the wire shows them: statuses, listings, and each block's
replicas in the order readers should try them (with read tokens when asked)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from pydfs import wire
from pydfs.namenode.membership import Membership
from pydfs.namenode.store import Inode
from pydfs.namenode.store.interface import Entry, Placed


@dataclass(frozen=True, slots=True)
class DirPage:
    """A page of a directory's entries, whether entries come before and after it, and what
    the whole directory holds."""

    path: str
    entries: list[wire.FileStatus]
    earlier: bool
    later: bool
    dirs: int
    files: int
    bytes: int


KINDS: dict[str, Literal["file", "dir", "symlink"]] = {"f": "file", "d": "dir", "l": "symlink"}


def of(node: Inode, path: str, blocks: list[wire.BlockInfo] | None = None) -> wire.FileStatus:
    return wire.FileStatus(
        path=path,
        name=node.name or "/",
        type=KINDS[node.type],
        size=node.size,
        mtime=node.mtime,
        ctime=node.ctime,
        owner=node.owner,
        group=node.group,
        mode=node.mode,
        replication=node.replication,
        block_size=node.block_size,
        blocks=blocks,
        target=node.target,
    )


def listing(path: str, entries: Iterable[Entry]) -> wire.Listing:
    # Straight from rows to statuses: names were validated when stored, and a large
    # directory is where per-entry work shows.
    prefix = path.rstrip("/") + "/"
    status, kinds = wire.FileStatus, KINDS
    return wire.Listing(
        path,
        [
            status(prefix + name, name, kinds[kind], size, mt, ct, o, g, m, r, bs, None, target)
            for name, kind, size, mt, ct, o, g, m, r, bs, target in entries
        ],
    )


def blocks(
    placed: list[Placed],
    membership: Membership,
    read_token: Callable[[str], str] | None = None,
) -> list[wire.BlockInfo]:
    """Readers take the first replica: spread them over live nodes, dead ones last."""
    infos = []
    for block, nodes in placed:
        refs = [membership.ref(n) for n in nodes]
        random.shuffle(refs)
        refs.sort(key=lambda n: not n.live)
        info = wire.BlockInfo(block.id, block.size, block.crc, refs)
        if read_token is not None:
            info.token = read_token(block.id)
        infos.append(info)
    return infos
