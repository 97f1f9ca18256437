"""Whole trees from the client, built from directory listings: glob patterns, a recursive walk
with every entry's status, and what a subtree holds (``du``, ``count``).

The name node answers one directory per listing; these functions take an ``AsyncClient`` and
ask for as many listings as the tree has directories, several at once.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, TypeVar

from pydfs import paths, wire
from pydfs.errors import Unauthenticated

if TYPE_CHECKING:
    from pydfs.client.aio import AsyncClient

LISTINGS_AT_ONCE = 8
T = TypeVar("T")


OnError = Callable[[BaseException], None]
"""Told of each directory that may not be read, which a walk or glob then passes over; without
one, the error is raised."""

_ESCAPE = re.compile(r"\\([][*?\\])")  # a backslash makes the glob character after it plain


def is_pattern(pattern: str) -> bool:
    """Does *pattern* hold ``*``, ``?`` or ``[`` that no backslash escapes?"""
    return paths.has_magic(_ESCAPE.sub("", pattern))


def unescape(pattern: str) -> str:
    """*pattern* as a plain name: ``a\\[1\\].txt`` is ``a[1].txt``."""
    return _ESCAPE.sub(r"\1", pattern)


def matches(name: str, pattern: str) -> bool:
    """fnmatch of one name, as a shell does: a leading '.' is matched only by a '.', and a
    backslash makes the glob character after it plain."""
    if name.startswith(".") and not pattern.startswith("."):
        return False
    return fnmatchcase(name, _ESCAPE.sub(lambda m: f"[{m[1]}]" if m[1] != "\\" else m[1], pattern))


async def _listing(
    client: AsyncClient, directory: str, onerror: OnError | None = None
) -> list[wire.FileStatus] | None:
    """The entries of *directory*; none if it is gone or is a file. One that may not be read
    is told to *onerror* (None then), or raised."""
    try:
        entries = await client.ls(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except PermissionError as exc:
        if onerror is None or isinstance(exc, Unauthenticated):
            raise
        onerror(exc)
        return None
    return [e for e in entries if e.path != directory]  # a file lists itself


async def exists(client: AsyncClient, path: str, onerror: OnError | None = None) -> bool:
    """Is there a *path*? One whose directory may not be searched is told to *onerror* (and
    is not), or raised."""
    try:
        await client.info(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except PermissionError as exc:
        if onerror is None or isinstance(exc, Unauthenticated):
            raise
        onerror(exc)
        return False
    return True


async def glob(client: AsyncClient, pattern: str, onerror: OnError | None = None) -> list[str]:
    """The paths that match the absolute *pattern*, sorted: ``*``, ``?`` and ``[...]`` match
    within one component (fnmatch), as in a shell; ``\\`` escapes them. A pattern without them
    names itself, if it exists. A directory on the way that may not be read is told to
    *onerror* (or raised), never taken for one without a match."""
    found = ["/"]
    literal_tail = False
    for part in paths.split(pattern):
        if not is_pattern(part):
            found = [paths.join(d, unescape(part)) for d in found]
            literal_tail = True
            continue
        listings = await _bounded([_listing(client, d, onerror) for d in found])
        found = [e.path for entries in listings for e in entries or [] if matches(e.name, part)]
        literal_tail = False
        if not found:
            return []
    if literal_tail:
        there = await _bounded([exists(client, p, onerror) for p in found])
        found = [p for p, ok in zip(found, there, strict=True) if ok]
    return sorted(found)


async def _bounded(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Await *aws*, at most ``LISTINGS_AT_ONCE`` at a time; results in order."""
    import asyncio

    limit = asyncio.Semaphore(LISTINGS_AT_ONCE)

    async def one(aw: Awaitable[T]) -> T:
        async with limit:
            return await aw

    return list(await asyncio.gather(*(one(aw) for aw in aws)))


async def walk(
    client: AsyncClient, path: str, onerror: OnError | None = None
) -> AsyncIterator[tuple[wire.FileStatus, list[wire.FileStatus]]]:
    """Top down, depth first: every directory under *path* (itself included) with its
    entries, sorted by name; nothing for a file. A directory that disappears during the walk
    is passed over, as ``os.walk`` does; one that may not be read is told to *onerror* (else
    raised), so that no caller takes what it could not read for empty."""
    top = await client.info(path)
    if top.type != "dir":
        return
    pending = [top]
    while pending:
        directory = pending.pop()
        listing = await _listing(client, directory.path, onerror)
        if listing is None:
            continue
        entries = sorted(listing, key=lambda e: e.name)
        yield directory, entries
        pending.extend(reversed([e for e in entries if e.type == "dir"]))


async def files(
    client: AsyncClient, path: str, onerror: OnError | None = None
) -> AsyncIterator[wire.FileStatus]:
    """Every file under *path* (or *path* itself, when it is a file)."""
    top = await client.info(path)
    if top.type != "dir":
        yield top
        return
    async for _, entries in walk(client, path, onerror):
        for entry in entries:
            if entry.type != "dir":
                yield entry


@dataclass
class Usage:
    """What a subtree holds: ``size`` bytes of content in ``files`` files and ``directories``
    directories (itself included); ``raw`` counts every replica the files ask for."""

    path: str
    files: int = 0
    directories: int = 0
    size: int = 0
    raw: int = 0


async def usage(client: AsyncClient, path: str, onerror: OnError | None = None) -> Usage:
    top = await client.info(path)
    total = Usage(top.path)
    if top.type != "dir":
        total.files, total.size, total.raw = 1, top.size, top.size * top.replication
        return total
    total.directories = 1  # and each below it, read or not
    async for _, entries in walk(client, path, onerror):
        for e in entries:
            if e.type == "dir":
                total.directories += 1
            else:
                total.files += 1
                total.size += e.size
                total.raw += e.size * e.replication
    return total
