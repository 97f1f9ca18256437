"""``get`` and ``put``: files and whole trees between this machine and pydfs.

Several files move at once (``--parallel``), under one progress bar for the whole transfer.
Neither command replaces what exists without ``-f``, as ``cp`` and ``mv`` do not.
"""

from __future__ import annotations

import argparse
import errno
import os
import stat
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, cast

from pydfs import paths
from pydfs.cli import render
from pydfs.cli.context import Context, interruptible
from pydfs.errors import InvalidArgument, IsADirectory, NotADirectory, NotFound

PARALLEL = 4
SMALL_PARALLEL = 64  # small files put at once: their commits go to the name node together
Done = tuple[str, str, int, object]  # from, to, size, what --json tells of it

READ_HELP = """\
REMOTE... [LOCAL]: with one REMOTE, LOCAL defaults to its name here; with several (or a quoted
glob: pydfs get '/data/*.csv' .), LOCAL is a directory. LOCAL '-' writes to standard output.
An existing local file is replaced only with -f; a download is atomic (all or nothing).
What cannot be read is named on stderr, the rest is copied, and the exit code is not 0."""

WRITE_HELP = """\
LOCAL... [REMOTE]: with one LOCAL, REMOTE defaults to its name in the working directory; with
several, REMOTE is a directory. LOCAL '-' reads standard input (REMOTE needed then).
An existing file is replaced only with -f; a file appears, whole, only once all of it is stored.
-r follows symbolic links to files but not to directories, and skips what is not a regular
file, saying so; what cannot be read is named on stderr, the rest is copied, and the exit code
is not 0."""


def _size(text: str) -> int:
    units = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = t[-1] if t and t[-1] in "kmg" else ""
    try:
        value = int(float(t[: len(t) - len(unit)]) * units[unit])
    except (ValueError, OverflowError):
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 65536, 64K or 64M)")
    return value


def _common(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("-r", "-R", "--recursive", action="store_true", help="whole directory trees")
    p.add_argument("-f", "--force", action="store_true", help=f"replace an existing {what} file")
    p.add_argument(
        "--parallel",
        type=int,
        help=f"files in flight at once ({PARALLEL}; put: {SMALL_PARALLEL} of those up to 1 MiB)",
    )


def read_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="REMOTE... [LOCAL]", help="see above")
    _common(p, "local")


def write_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="LOCAL... [REMOTE]", help="see above")
    _common(p, "remote")
    p.add_argument("--replication", type=int, help="replicas per block")
    p.add_argument("-b", "--block-size", type=_size, help="block size, e.g. 64M")


def _split(args: argparse.Namespace) -> tuple[list[str], str | None]:
    return (args.paths[:-1], args.paths[-1]) if len(args.paths) > 1 else (args.paths, None)


async def _run_all(
    ctx: Context,
    jobs: list[Callable[[], Awaitable[Done]]],
    parallel: int,
    small: list[bool] | None = None,
    small_parallel: int = 0,
) -> list[Done]:
    """Run *jobs*, at most *parallel* at a time, and those *small* marks at most
    *small_parallel* at a time besides. A failure of one file is reported and the others go
    on; any other failure cancels the rest."""
    import asyncio

    limits = {False: asyncio.Semaphore(max(1, parallel))}
    limits[True] = asyncio.Semaphore(max(1, small_parallel)) if small_parallel else limits[False]

    async def one(job: Callable[[], Awaitable[Done]], is_small: bool) -> Done | None:
        async with limits[is_small]:
            with ctx.carry_on():
                return await job()
            return None

    try:
        async with asyncio.TaskGroup() as group:
            marks = small or [False] * len(jobs)
            tasks = [group.create_task(one(j, m)) for j, m in zip(jobs, marks, strict=True)]
    except BaseExceptionGroup as failed:  # the first error is the one to tell
        raise failed.exceptions[0] from None
    return [done for t in tasks if (done := t.result()) is not None]


def _report(ctx: Context, done: list[Done], single: bool) -> None:
    lines = [f"{src} -> {dst} ({render.size(size)})" for src, dst, size, _ in done]
    if len(done) > 1:
        total = sum(size for _, _, size, _ in done)
        lines.append(f"{render.count(len(done), 'file')}, {render.size(total)}")
    ctx.answer("\n".join(lines), single, [d for _, _, _, d in done])


def _file_target(local: str | None, name: str) -> Path:
    """Where a remote file called *name* is saved: into *local* when it is a directory, else
    as *local*, which must then not be written as a directory (``nodir/``), as ``cp`` says."""
    if local is None:
        return Path(name or ".")
    target = Path(local)
    if target.is_dir():
        return target / name
    if local.endswith("/") or local.endswith(os.sep):
        if target.exists():
            raise NotADirectory(f"{local}: not a directory")
        raise NotFound(f"{local}: no such directory")
    return target


# --- get ---------------------------------------------------------------------------------------


async def file_read(ctx: Context, args: argparse.Namespace) -> int:
    sources, local = _split(args)
    if local == "-":
        out = sys.stdout.buffer
        for remote in await ctx.expand(sources):
            with ctx.carry_on():
                async for data in ctx.client.read_stream(remote):
                    out.write(data)
        out.flush()
        return 0
    remotes = await ctx.expand(sources)
    if not remotes:  # each was reported
        return 0
    single = remotes.one and not args.recursive
    if single:  # the common case, in as few round trips as before
        target = _file_target(local, paths.basename(remotes[0]))
        total = (await ctx.client.info(remotes[0])).size if sys.stderr.isatty() else None
        plan = [(remotes[0], target, total)]
    else:
        plan = await _plan_get(ctx, remotes, local or ".", args.recursive)
    if not plan:
        return 0
    known = [size for _, _, size in plan]
    total = None if None in known else sum(s or 0 for s in known)
    label = f"get {paths.basename(plan[0][0])}" if len(plan) == 1 else f"get {len(plan)} files"
    with ctx.progress(label, total) as advance:

        def job(remote: str, target: Path) -> Callable[[], Awaitable[Done]]:
            async def download() -> Done:
                try:
                    size = await ctx.client.download(
                        remote, target, overwrite=args.force, progress=advance
                    )
                except IsADirectory:
                    raise IsADirectory(f"{remote} is a directory (use get -r)") from None
                return (
                    remote,
                    str(target),
                    size,
                    {"path": remote, "local": str(target), "size": size},
                )

            return download

        done = await _run_all(ctx, [job(r, t) for r, t, _ in plan], args.parallel or PARALLEL)
    _report(ctx, done, single)
    return 0


async def _plan_get(
    ctx: Context, remotes: list[str], local: str, recursive: bool
) -> list[tuple[str, Path, int | None]]:
    """Each remote file and the local file it goes to; local directories are made on the way.
    What cannot be read is reported and left out."""
    from pydfs.client import tree

    if len(remotes) > 1 and not Path(local).is_dir():
        raise NotADirectory(f"{local} is not a directory ({len(remotes)} sources go into one)")
    plan: list[tuple[str, Path, int | None]] = []
    for remote in remotes:
        with ctx.carry_on():
            status = await ctx.client.info(remote)
            if status.type != "dir":
                plan.append((remote, _file_target(local, paths.basename(remote)), status.size))
                continue
            if not recursive:
                raise IsADirectory(f"{remote} is a directory (use get -r)")
            into = Path(local) / paths.basename(remote) if Path(local).is_dir() else Path(local)
            async for directory, entries in tree.walk(ctx.client, remote, ctx.report):
                here = into / directory.path[len(remote) :].lstrip("/")
                here.mkdir(parents=True, exist_ok=True)
                plan += [(e.path, here / e.name, e.size) for e in entries if e.type == "file"]
    return plan


# --- put ---------------------------------------------------------------------------------------


async def file_write(ctx: Context, args: argparse.Namespace) -> int:
    locals_, remote_arg = _split(args)
    kwargs = {"replication": args.replication, "block_size": args.block_size}
    if "-" in locals_:
        if remote_arg is None or len(locals_) > 1:
            raise InvalidArgument("give one remote path when reading standard input")
        remote = ctx.file_path(remote_arg)
        source = sys.stdin.buffer if sys.stdin.seekable() else _Input(sys.stdin.fileno())
        with ctx.progress("put stdin", None) as advance, interruptible():
            status = await ctx.client.write_stream(
                remote, cast(IO[bytes], source), overwrite=args.force, progress=advance, **kwargs
            )
        _report(ctx, [("-", status.path, status.size, status)], True)
        return 0
    for name in locals_:
        if args.recursive and name.isdigit() and not os.path.exists(name):
            raise InvalidArgument(
                f"put -r means recursive; give a replication factor as --replication {name}"
            )
    plan = await _plan_put(ctx, locals_, remote_arg, args.recursive)
    if not plan:
        return 0
    total = sum(size for _, _, size in plan)
    label = f"put {Path(plan[0][0]).name}" if len(plan) == 1 else f"put {len(plan)} files"
    with ctx.progress(label, total) as advance:

        def job(local: str, remote: str) -> Callable[[], Awaitable[Done]]:
            async def upload() -> Done:
                status = await ctx.client.upload(
                    local, remote, overwrite=args.force, progress=advance, **kwargs
                )
                return local, status.path, status.size, status

            return upload

        from pydfs.client.transfer import SMALL_WRITE

        # Small files go many at a time (unless --parallel says otherwise), so that their
        # commits share requests to the name node (``client.commits``).
        small = [size <= SMALL_WRITE for _, _, size in plan]
        done = await _run_all(
            ctx,
            [job(src, dst) for src, dst, _ in plan],
            args.parallel or PARALLEL,
            small,
            args.parallel or SMALL_PARALLEL,
        )
    single = len(locals_) == 1 and not args.recursive
    _report(ctx, done, single)
    return 0


async def _remote_dir(ctx: Context, remote: str) -> bool:
    try:
        return (await ctx.client.info(remote)).type == "dir"
    except NotFound:
        return False


async def _plan_put(
    ctx: Context, locals_: list[str], remote_arg: str | None, recursive: bool
) -> list[tuple[str, str, int]]:
    """Each local file and the remote file it goes to; remote directories are made on the way."""
    remote = ctx.file_path(remote_arg) if remote_arg else ctx.cwd
    into_dir = remote_arg is None or await _remote_dir(ctx, remote.rstrip("/") or "/")
    if len(locals_) > 1 and not into_dir:
        raise NotADirectory(f"{remote} is not a directory ({len(locals_)} sources go into one)")
    plan: list[tuple[str, str, int]] = []
    for local in locals_:
        path = Path(local)
        target = paths.join(remote.rstrip("/") or "/", path.name) if into_dir else remote
        with ctx.carry_on():
            if not path.is_dir():
                plan.append((local, target, path.stat().st_size))
                continue
            if not recursive:
                raise IsADirectory(f"{local} is a directory (use put -r)")
            for here, dirnames, filenames in os.walk(path, onerror=ctx.report):
                relative = Path(here).relative_to(path)
                base = paths.normalize(str(relative), target) if str(relative) != "." else target
                links = [d for d in dirnames if os.path.islink(os.path.join(here, d))]
                for name in links:
                    ctx.warn(f"{os.path.join(here, name)}: a symbolic link to a directory: skipped")
                dirnames[:] = sorted(set(dirnames) - set(links))
                made = False
                with ctx.carry_on():
                    await ctx.client.mkdir(base, parents=True)
                    made = True
                if not made:
                    dirnames.clear()
                    continue
                for name in sorted(filenames):
                    file = Path(here) / name
                    with ctx.carry_on():
                        size = _regular_size(file, ctx)
                        if size is not None:
                            plan.append((str(file), paths.join(base, name), size))
    return plan


def _regular_size(file: Path, ctx: Context) -> int | None:
    """The size of *file* in a tree, a regular file or a link to one; any other kind (a FIFO,
    a socket, a device) is skipped with a warning, as reading one could block or never end."""
    try:
        status = file.stat()
    except FileNotFoundError:
        if file.is_symlink():
            raise FileNotFoundError(errno.ENOENT, "a symbolic link to nothing", str(file)) from None
        raise
    if not stat.S_ISREG(status.st_mode):
        ctx.warn(f"{file}: not a regular file: skipped")
        return None
    return status.st_size


class _Input:
    """Standard input that is a terminal or a pipe, for ``put -``. Its end is final: after a
    line, one Ctrl-D ends the upload, where a buffered reader would wait for a second."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.ended = False

    def read(self, n: int) -> bytes:
        pieces: list[bytes] = []
        got = 0
        while got < n and not self.ended:
            data = os.read(self.fd, n - got)
            self.ended = not data
            pieces.append(data)
            got += len(data)
        return b"".join(pieces)

    def seekable(self) -> bool:
        return False
