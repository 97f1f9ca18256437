"""Reading files in place: ``cat``, ``head``, ``tail [-f]`` and ``checksum``.

Each reads one version of a file (the one current when it was opened), so that a file replaced
during a read never gives a mix of two versions.
"""

from __future__ import annotations

import argparse
import math
import sys
from contextlib import aclosing

from pydfs import wire
from pydfs.cli.context import Context
from pydfs.errors import ChecksumMismatch, IsADirectory, NotFound

TAIL_PIECE = 64 * 1024  # read backwards this much at a time, looking for line ends
MIN_INTERVAL = 0.1  # seconds, the least `tail -f -s` takes


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)


async def cat(ctx: Context, args: argparse.Namespace) -> int:
    for path in await ctx.expand(args.paths):
        with ctx.carry_on():
            async with aclosing(ctx.client.read_stream(path)) as stream:
                async for data in stream:
                    _write(data)
    sys.stdout.buffer.flush()
    return 0


async def head(ctx: Context, args: argparse.Namespace) -> int:
    path = ctx.path(args.path)
    if args.bytes is not None:
        async with aclosing(ctx.client.read_stream(path, 0, args.bytes)) as stream:
            async for data in stream:
                _write(data)
    else:
        lines = args.lines
        async with aclosing(ctx.client.read_stream(path)) as stream:
            async for data in stream:
                if lines <= 0:
                    break
                end = 0
                while lines > 0 and (end := data.find(b"\n", end) + 1):
                    lines -= 1
                _write(data if lines > 0 else data[:end])
    sys.stdout.buffer.flush()
    return 0


async def _tail_start(reader: object, size: int, lines: int | None, nbytes: int | None) -> int:
    """Where the last *lines* lines (or *nbytes* bytes) of a file of *size* bytes begin."""
    if nbytes is not None:
        return max(0, size - nbytes)
    assert lines is not None
    if lines == 0:
        return size
    end = size
    wanted = lines + 1  # the newline that ends the last line does not start one
    while end > 0:
        start = max(0, end - TAIL_PIECE)
        piece = await reader.read_at(start, end - start)  # type: ignore[attr-defined]
        for i in range(len(piece) - 1, -1, -1):
            if piece[i] == 0x0A and start + i != size - 1:
                wanted -= 1
                if wanted == 1:
                    return start + i + 1
        end = start
    return 0


async def tail(ctx: Context, args: argparse.Namespace) -> int:
    import asyncio

    path = ctx.path(args.path)
    reader = await ctx.client.open(path)
    status = reader.status
    start = await _tail_start(reader, status.size, args.lines, args.bytes)
    await _copy(reader, start, status.size)
    if not args.follow:
        return 0
    # Files are written whole: follow the name, as `tail -F`. A new version that begins with
    # what was shown is taken as grown, and its new bytes shown; any other is shown whole.
    seen = await reader.read_at(max(0, status.size - TAIL_PIECE), TAIL_PIECE)
    gone = False
    while True:
        await asyncio.sleep(args.sleep_interval)
        try:
            now = await ctx.client.info(path)
        except NotFound:
            if not gone:
                print(f"pydfs: tail: {path} has gone; waiting for it", file=sys.stderr)
            gone = True
            continue
        if not gone and _blocks(now) == _blocks(status) and now.size == status.size:
            continue
        gone = False
        reader = await ctx.client.open(path)
        new = reader.status
        offset = status.size - len(seen)
        grew = new.size >= status.size and await reader.read_at(offset, len(seen)) == seen
        if not grew:
            print(f"pydfs: tail: {path} was replaced; showing it from the start", file=sys.stderr)
        await _copy(reader, status.size if grew else 0, new.size)
        seen = await reader.read_at(max(0, new.size - TAIL_PIECE), TAIL_PIECE)
        status = new


def _blocks(status: wire.FileStatus) -> list[str]:
    return [b.id for b in status.blocks or []]


async def _copy(reader: object, start: int, end: int) -> None:
    pos = start
    while pos < end:
        data = await reader.read_at(pos, min(TAIL_PIECE * 16, end - pos))  # type: ignore[attr-defined]
        if not data:
            break
        _write(data)
        pos += len(data)
    sys.stdout.buffer.flush()


async def _sha256_by_reading(ctx: Context, path: str) -> tuple[str, int]:
    import hashlib

    digest, size = hashlib.sha256(), 0
    async with aclosing(ctx.client.read_stream(path)) as stream:
        async for data in stream:
            digest.update(data)
            size += len(data)
    return digest.hexdigest(), size


async def checksum(ctx: Context, args: argparse.Namespace) -> int:
    found = await ctx.expand(args.paths)
    answers = []
    for path in found:
        with ctx.carry_on():
            answers.append(await _checksum(ctx, path, args.verify))
    ctx.answer("\n".join(f"{a['sha256']}  {a['path']}" for a in answers), found.one, answers)
    return 0


async def _checksum(ctx: Context, path: str, verify: bool) -> dict[str, object]:
    recorded = await ctx.client.checksum(path)
    if recorded.type == "dir":
        raise IsADirectory(f"{path} is a directory")
    sha256, source = recorded.sha256, "recorded"
    if sha256 is None or verify:
        read, _ = await _sha256_by_reading(ctx, path)
        if sha256 is not None and read != sha256:
            raise ChecksumMismatch(
                f"{path}: its content does not match the SHA-256 its writer recorded "
                f"(recorded {sha256}, read {read})"
            )
        if sha256 is None:
            ctx.warn(f"{path}: no SHA-256 was recorded when it was written; computed by reading")
        sha256, source = read, "computed" if sha256 is None else "verified"
    return {"path": path, "size": recorded.size, "sha256": sha256, "source": source}


CHECKSUM_HELP = """\
The SHA-256 of each file's whole content, in the format of sha256sum: compare it with
`sha256sum LOCAL` to check a transfer without downloading. It is recorded when the file is
written (the writing client computes it as it streams the upload; a copy keeps it), so it
proves what the writer computed, not what the data nodes hold now: --verify reads the file
back and compares. A file written before pydfs recorded hashes has its hash computed by
reading it, and says so."""


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"not a count: {text!r}")
    return value


def _interval(text: str) -> float:
    """Seconds between looks at a followed file: at least ``MIN_INTERVAL``, as a smaller one
    would only load the name node (it does not show changes sooner than they commit)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not MIN_INTERVAL <= value < math.inf:
        raise argparse.ArgumentTypeError(f"not an interval of at least {MIN_INTERVAL} s: {text!r}")
    return value


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cat", help="print files to standard output", description="Globs quoted.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="file(s) to print")
    p.set_defaults(handler=cat)

    for name, what in (("head", "first"), ("tail", "last")):
        p = sub.add_parser(
            name,
            help=f"print the {what} lines (or bytes) of a file",
            description=f"The {what} 10 lines of PATH, or -n LINES, or -c BYTES."
            + (" -f follows the file as it is replaced (tail -F)." if name == "tail" else ""),
        )
        p.add_argument("path", help="the file")
        count = p.add_mutually_exclusive_group()
        count.add_argument("-n", "--lines", type=_count, default=10, help="lines (10)")
        count.add_argument("-c", "--bytes", type=_count, help="bytes instead of lines")
        if name == "tail":
            p.add_argument(
                "-f", "--follow", action="store_true", help="keep printing as the file changes"
            )
            p.add_argument(
                "-s",
                "--sleep-interval",
                type=_interval,
                default=1.0,
                help=f"seconds between looks at the file (1; at least {MIN_INTERVAL})",
            )
        p.set_defaults(handler=head if name == "head" else tail)

    p = sub.add_parser(
        "checksum",
        help="SHA-256 of files, as sha256sum prints it",
        description=CHECKSUM_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="file(s); globs quoted")
    p.add_argument(
        "--verify", action="store_true", help="read the file and compare with the recorded hash"
    )
    p.set_defaults(handler=checksum)
