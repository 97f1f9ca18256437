"""``PydfsFileSystem``: fsspec's calls over ``AsyncClient``'s, each in as few round trips to
the name node as it can be (the package's docstring says what ``pydfs://`` URLs name)."""

from __future__ import annotations

import asyncio
import datetime
import os
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from glob import has_magic
from typing import Any, Literal, TypeVar

from fsspec.asyn import AsyncFileSystem, _run_coros_in_chunks, sync, sync_wrapper
from fsspec.callbacks import DEFAULT_CALLBACK, Callback
from fsspec.implementations.local import trailing_sep
from fsspec.utils import stringify_path

from pydfs import paths
from pydfs.client.aio import AsyncClient, resolve_namenode
from pydfs.client.files import AsyncReader, AsyncWriter
from pydfs.errors import NotFound
from pydfs.fsspec.files import PydfsFile, details

PROTOCOL = "pydfs"
PREFIX = f"{PROTOCOL}://"
PIPE_CONCURRENCY = 128
"""Small files one ``pipe`` writes at once (two waves of 64: ``AsyncClient.write_many``): each
holds an upload lease until it commits, and the name node lets a user hold 256 (fsspec's
default, 1,280 at once, would run into that limit)."""

T = TypeVar("T")


def _close_client(client: AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
    """Close *client* on the loop that owns its connections, waiting for it (fsspec's own loop,
    at exit); where that cannot wait (on the loop's own thread, when an asynchronous
    filesystem is collected) or the loop is stopping, drop them at once, as s3fs does."""
    if loop.is_running() and not loop.is_closed():
        try:
            sync(loop, client.close, timeout=5)
            return
        except Exception:  # on the loop's own thread, or the loop is stopping: fall through
            pass
    client.close_now()


async def _read_range(reader: AsyncReader, start: int | None, end: int | None) -> bytes:
    """Bytes ``[start, end)`` of the file *reader* has open; negative bounds count from its end
    and ``None`` means its start (or end), as fsspec's ``cat_file`` has them."""
    size = reader.size
    lo = 0 if start is None else max(0, size + start) if start < 0 else start
    hi = size if end is None else max(0, size + end) if end < 0 else min(end, size)
    return await reader.read_at(lo, hi - lo)


def _split_listing(path: str, listing: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """A directory's entries as fsspec's walk has them: (dirs, files) by name, and the dirs'
    full paths; a file listed as itself is the file ``""``."""
    dirs, files, full = {}, {}, {}
    for info in listing:
        name = info["name"].rstrip("/")
        if name == path:
            files[""] = info
        elif info["type"] == "directory":
            dirs[paths.basename(name)], full[paths.basename(name)] = info, name
        else:
            files[paths.basename(name)] = info
    return dirs, files, full


class PydfsFileSystem(AsyncFileSystem):  # type: ignore[misc]
    """A pydfs cluster as an fsspec filesystem (protocol ``pydfs``)."""

    protocol = PROTOCOL
    root_marker = "/"
    sep = "/"

    def __init__(
        self,
        namenode: str | list[str] | None = None,
        *,
        token: str | None = None,
        ca: str | None = None,
        replication: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.namenode = resolve_namenode(namenode)
        self.token = token
        self.ca = ca
        self.replication = replication
        self._client: AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # --- URLs -----------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = stringify_path(path)
        if path.startswith(PREFIX):
            rest = path[len(PREFIX) :]
            slash = rest.find("/")
            path = "" if slash < 0 else rest[slash:]  # drop host:port
        elif path.startswith(f"{PROTOCOL}::"):
            path = path[len(PROTOCOL) + 2 :]
        return "/" + path.strip("/")

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict[str, Any]:
        if path.startswith(PREFIX):
            netloc = path[len(PREFIX) :].split("/", 1)[0]
            if netloc:  # host:port, or several: host1:port1,host2:port2
                return {"namenode": ",".join(f"http://{h}" for h in netloc.split(",") if h)}
        return {}

    def unstrip_protocol(self, name: str) -> str:
        if name.startswith(PREFIX):
            return name
        hosts = [url.removeprefix("http://") for url in self.namenode.split(",")]
        netloc = "" if any("://" in h for h in hosts) else ",".join(hosts)  # https: no form
        return f"{PREFIX}{netloc}{self._strip_protocol(name)}"

    # --- the client, one per event loop ---------------------------------------------------

    def client(self) -> AsyncClient:
        """The ``AsyncClient`` for the running loop. aiohttp sessions belong to the loop that
        made them, so a filesystem used from another loop gets a client of its own."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            if self._finalizer is not None:
                self._finalizer()  # the old loop's client
            self._client = AsyncClient(
                self.namenode, token=self.token, ca=self.ca, replication=self.replication
            )
            self._client_loop = loop
            self._finalizer = weakref.finalize(self, _close_client, self._client, loop)
        return self._client

    async def aclose(self) -> None:
        """Close the client of the running loop (for ``asynchronous=True`` users)."""
        if self._client is not None and self._client_loop is asyncio.get_running_loop():
            client, self._client = self._client, None
            if self._finalizer is not None:
                self._finalizer.detach()
                self._finalizer = None
            await client.close()

    # --- metadata ---------------------------------------------------------------------------

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return details(await self.client().info(self._strip_protocol(path)))

    async def _ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        entries = await self.client().ls(self._strip_protocol(path))
        if detail:
            return [details(e) for e in entries]
        return [e.path for e in entries]

    async def _walk(
        self,
        path: str,
        maxdepth: int | None = None,
        topdown: bool = True,
        on_error: str | Callable[[OSError], object] = "omit",
        **kwargs: Any,
    ) -> AsyncIterator[tuple[str, Any, Any]]:
        """fsspec's walk, listing each level's directories at once rather than one by one:
        breadth first, so that a level's entries (top down: as the caller pruned them) are
        known before any of it is listed."""
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        detail = kwargs.pop("detail", False)
        level, depth = [self._strip_protocol(path)], 0
        bottom_up: list[tuple[str, Any, Any]] = []
        while level:
            depth += 1
            listings = await _run_coros_in_chunks(
                [self._ls(d, detail=True) for d in level], nofiles=True, return_exceptions=True
            )
            below: list[str] = []
            for directory, listing in zip(level, listings, strict=True):
                if isinstance(listing, Exception):
                    if not isinstance(listing, OSError) or on_error == "raise":
                        raise listing
                    if callable(on_error):
                        on_error(listing)
                    listing = []
                dirs, files, full = _split_listing(directory, listing)
                entry = (directory, dirs, files) if detail else (directory, [*dirs], [*files])
                if topdown:
                    yield entry
                else:
                    bottom_up.append(entry)
                if maxdepth is None or depth < maxdepth:
                    below += [full[name] for name in entry[1]]
            level = below
        for entry in reversed(bottom_up):
            yield entry

    async def _find(
        self, path: str, maxdepth: int | None = None, withdirs: bool = False, **kwargs: Any
    ) -> Any:
        """fsspec's find over the walk above; a directory's own status, wanted *withdirs*, is
        asked for while the walk goes on."""
        path = self._strip_protocol(path)
        detail = kwargs.pop("detail", False)
        top = asyncio.ensure_future(self._info(path)) if withdirs else None
        out: dict[str, Any] = {}
        try:
            async for _, dirs, files in self._walk(path, maxdepth, detail=True, **kwargs):
                if withdirs:
                    files.update(dirs)
                out.update({info["name"]: info for info in files.values()})
        finally:
            # Awaited even when the walk failed: its own failure (a missing path) is expected.
            [root] = await asyncio.gather(top, return_exceptions=True) if top else [None]
        if isinstance(root, dict) and root["type"] == "directory":
            out[path] = root
        names = sorted(out)
        return {name: out[name] for name in names} if detail else names

    async def _du(
        self, path: str, total: bool = True, maxdepth: int | None = None, **kwargs: Any
    ) -> int | dict[str, int]:
        """Sizes from the listings ``find`` made (fsspec's asks for each file's status)."""
        found = await self._find(path, maxdepth=maxdepth, detail=True, **kwargs)
        sizes = {name: info["size"] for name, info in found.items()}
        return sum(sizes.values()) if total else sizes

    async def _modified(self, path: str) -> datetime.datetime:
        info = await self._info(path)
        return datetime.datetime.fromtimestamp(info["mtime"], tz=datetime.UTC)

    async def _created(self, path: str) -> datetime.datetime:
        info = await self._info(path)
        return datetime.datetime.fromtimestamp(info["created"], tz=datetime.UTC)

    modified = sync_wrapper(_modified)
    created = sync_wrapper(_created)

    # --- directories ------------------------------------------------------------------------

    async def _mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        try:
            await self.client().mkdir(path)
        except FileNotFoundError:
            if not create_parents:
                raise
            await self.client().mkdir(path, parents=True)

    async def _makedirs(self, path: str, exist_ok: bool = False) -> None:
        path = self._strip_protocol(path)
        try:
            await self.client().mkdir(path)
        except FileExistsError:
            if not (exist_ok and await self._isdir(path)):
                raise
        except FileNotFoundError:
            await self.client().mkdir(path, parents=True)

    async def _rmdir(self, path: str) -> None:
        await self.client().rmdir(self._strip_protocol(path))

    rmdir = sync_wrapper(_rmdir)

    async def _with_parent(self, path: str, write: Callable[[], Awaitable[T]]) -> T:
        """*write* to *path*; if the directory it goes in is missing, make it (and its parents)
        and write again. So a write into a directory that exists costs no ``mkdir``."""
        try:
            return await write()
        except FileNotFoundError:
            parent = paths.parent(path)
            if parent == paths.ROOT:
                raise
            await self.client().mkdir(parent, parents=True)
            return await write()

    async def _make_parents(self, targets: list[str]) -> None:
        """Make the directories that *targets* go in, one ``mkdir -p`` per deepest one."""
        parents = sorted({paths.parent(t) for t in targets} - {paths.ROOT}, key=paths.split)
        deepest = [  # in this order a directory's descendants follow it
            p
            for p, after in zip(parents, [*parents[1:], ""], strict=True)
            if not (after and paths.is_within(after, p))
        ]
        await _run_coros_in_chunks(
            [self.client().mkdir(p, parents=True) for p in deepest], nofiles=True
        )

    # --- removal ----------------------------------------------------------------------------

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        """Delete a file; a directory is refused (``IsADirectoryError``), as a local one is."""
        await self.client().delete(self._strip_protocol(path))

    async def _rm(
        self,
        path: str | list[str],
        recursive: bool = False,
        batch_size: int | None = None,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(path, str) and not has_magic(path) and maxdepth is None:
            targets = [self._strip_protocol(path)]
        else:
            targets = await self._expand_path(path, recursive=recursive, maxdepth=maxdepth)
        if recursive and maxdepth is None:  # one recursive delete per topmost target
            tops: list[str] = []
            for target in sorted(targets, key=paths.split):  # descendants follow their parent
                if not tops or not paths.is_within(target, tops[-1]):
                    tops.append(target)
            targets = tops
        # Batches of many paths, each one transaction on the name node, deepest paths first.
        # Only a recursive removal takes directories: pyarrow's delete_file (and any caller that
        # means "this file") must not remove one.
        missing = await self.client().delete_many(
            sorted(targets, key=lambda t: -t.count("/")),
            recursive=recursive,
            type="any" if recursive else "file",
        )
        if missing and len(targets) == 1:
            raise NotFound(f"{missing[0]}: no such file or directory")

    # --- copies and moves, on the name node ---------------------------------------------------

    async def _cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Server-side copy: the new file shares the source's blocks."""
        src, dst = self._strip_protocol(path1), self._strip_protocol(path2)
        try:
            await self._with_parent(dst, lambda: self.client().copy(src, dst, overwrite=True))
        except IsADirectoryError:
            if not await self._isdir(src):
                raise
            await self._makedirs(dst, exist_ok=True)  # a recursive copy reaches a directory

    async def _mv_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Atomic server-side rename, replacing a file at *path2*."""
        src, dst = self._strip_protocol(path1), self._strip_protocol(path2)
        if src != dst:
            await self._with_parent(dst, lambda: self.client().move(src, dst, overwrite=True))

    async def _mv(
        self,
        path1: str | list[str],
        path2: str | list[str],
        recursive: bool = False,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Move files or whole directories, each one rename on the name node.

        A single path moves as it is (a directory with all it holds); into *path2* when that
        is an existing directory or ends in "/". Lists move pairwise; a glob moves each match.
        """
        if isinstance(path1, list) and isinstance(path2, list):
            pairs = list(zip(path1, path2, strict=True))
        else:
            assert isinstance(path2, str)
            into = trailing_sep(path2) or await self._isdir(path2)
            target = self._strip_protocol(path2)
            if isinstance(path1, str) and not has_magic(path1):
                sources = [self._strip_protocol(path1)]
            else:
                sources = await self._expand_path(path1, recursive=False, maxdepth=maxdepth)
                into = True
            if into:
                await self._makedirs(target, exist_ok=True)
                pairs = [(s, paths.join(target, paths.basename(s))) for s in sources]
            else:
                pairs = [(s, target) for s in sources]
        for src, dst in pairs:
            await self._mv_file(src, dst)

    mv = sync_wrapper(_mv)

    # --- bytes --------------------------------------------------------------------------------

    async def _cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        path = self._strip_protocol(path)
        if (start is None or start >= 0) and (end is None or end >= 0):
            # No bound counted from the end: no size needed first, and a small file this
            # client has seen is read in one round trip (``AsyncClient.read_bytes``).
            offset = start or 0
            length = None if end is None else max(0, end - offset)
            return await self.client().read_bytes(path, offset, length)
        reader = await self._open_reader(path)
        return await _read_range(reader, start, end)

    async def _cat_ranges(
        self,
        paths: list[str],
        starts: int | list[int | None] | None,
        ends: int | list[int | None] | None,
        max_gap: int | None = None,
        batch_size: int | None = None,
        on_error: str = "return",
        **kwargs: Any,
    ) -> list[bytes | Exception]:
        """Ranges of files, each file looked up once however many of its ranges are asked for
        (fsspec's looks a file up once per range)."""
        if max_gap is not None:
            raise NotImplementedError
        if not isinstance(paths, list):
            raise TypeError
        starts = starts if isinstance(starts, list) else [starts] * len(paths)
        ends = ends if isinstance(ends, list) else [ends] * len(paths)
        if len(starts) != len(paths) or len(ends) != len(paths):
            raise ValueError
        names = [self._strip_protocol(p) for p in paths]
        distinct = list(dict.fromkeys(names))
        opened = await _run_coros_in_chunks(
            [self._open_reader(p) for p in distinct],
            batch_size=batch_size,
            nofiles=True,
            return_exceptions=True,
        )
        readers = dict(zip(distinct, opened, strict=True))

        async def one(path: str, start: int | None, end: int | None) -> bytes:
            reader = readers[path]
            if isinstance(reader, Exception):
                raise reader
            return await _read_range(reader, start, end)

        out: list[bytes | Exception] = await _run_coros_in_chunks(
            [one(*r) for r in zip(names, starts, ends, strict=True)],
            batch_size=batch_size,
            nofiles=True,
            return_exceptions=True,
        )
        if on_error != "return":
            for result in out:
                if isinstance(result, Exception):
                    raise result
        return out

    async def _pipe_file(
        self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any
    ) -> None:
        path = self._strip_protocol(path)
        data, overwrite = bytes(value), mode != "create"
        await self._with_parent(
            path, lambda: self.client().write_bytes(path, data, overwrite=overwrite)
        )

    async def _pipe(
        self,
        path: str | dict[str, Any],
        value: Any = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Write many files: the directories they go in first (one ``mkdir -p`` per deepest
        one), then the files, ``PIPE_CONCURRENCY`` small ones at a time, their blocks and
        commits sent together (``AsyncClient.write_many``). The first file refused is raised,
        once all are done."""
        files = {
            self._strip_protocol(k): v
            for k, v in ({path: value} if isinstance(path, str) else path).items()
        }
        if len(files) == 1:
            [(name, data)] = files.items()
            await self._pipe_file(name, data, **kwargs)
            return
        await self._make_parents(list(files))
        results = await self.client().write_many(
            {k: bytes(v) for k, v in files.items()},
            overwrite=kwargs.get("mode", "overwrite") != "create",
            concurrency=batch_size or PIPE_CONCURRENCY,
        )
        for result in results.values():
            if isinstance(result, Exception):
                raise result

    async def _put_file(
        self,
        lpath: str,
        rpath: str,
        callback: Callback = DEFAULT_CALLBACK,
        mode: str = "overwrite",
        **kwargs: Any,
    ) -> None:
        rpath = self._strip_protocol(rpath)
        if os.path.isdir(lpath):
            await self._makedirs(rpath, exist_ok=True)
            return
        callback.set_size(os.path.getsize(lpath))
        await self._with_parent(
            rpath,
            lambda: self.client().upload(
                lpath, rpath, overwrite=mode != "create", progress=callback.relative_update
            ),
        )

    async def _get_file(
        self, rpath: str, lpath: str, callback: Callback = DEFAULT_CALLBACK, **kwargs: Any
    ) -> None:
        rpath = self._strip_protocol(rpath)
        status = await self.client().info(rpath, read=True)
        if status.type == "dir":
            os.makedirs(lpath, exist_ok=True)
            return
        callback.set_size(status.size)
        await self.client().download(
            rpath, lpath, overwrite=True, progress=callback.relative_update, status=status
        )

    async def _touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        path = self._strip_protocol(path)

        async def touch() -> None:
            try:
                await self.client().touch(path)
            except FileExistsError:
                if truncate:
                    await self.client().write_bytes(path, b"")

        await self._with_parent(path, touch)

    touch = sync_wrapper(_touch)

    # --- file objects ---------------------------------------------------------------------------

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | str | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> PydfsFile:
        return PydfsFile(
            self,
            self._strip_protocol(path),
            mode,
            block_size="default" if block_size is None else block_size,
            autocommit=autocommit,
            cache_options=cache_options,
            **kwargs,
        )

    async def _open_reader(self, path: str) -> AsyncReader:
        return await self.client().open(path, "rb", buffer_size=0)  # fsspec caches instead

    async def _open_writer(self, path: str, overwrite: bool, **options: Any) -> AsyncWriter:
        mode: Literal["wb", "xb"] = "wb" if overwrite else "xb"
        return await self._with_parent(path, lambda: self.client().open(path, mode, **options))
