"""The twelve client commands (numbers 0-11, names and aliases fixed), plus ``pwd``.

Each handler gets a ``Context`` (the client, the remote working directory, output settings) and
the parsed arguments, and returns an exit code. Errors are raised, and ``cli.main`` prints them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydfs import paths
from pydfs.cli import render
from pydfs.config import client_config_path
from pydfs.errors import DirectoryNotEmpty, InvalidArgument, NotFound, PydfsError

if TYPE_CHECKING:
    from pydfs.client import AsyncClient


@dataclass
class Context:
    client: AsyncClient
    cwd: str
    json: bool
    quiet: bool

    def path(self, path: str) -> str:
        return paths.normalize(path, self.cwd)

    def file_path(self, path: str) -> str:
        """``path`` for a file to be made: a trailing '/' stays, for the name node to refuse
        (``touch d/name/`` makes no file ``name``)."""
        resolved = self.path(path)
        return resolved + "/" if paths.names_directory(path) and resolved != "/" else resolved

    def progress(
        self, label: str, total: int | None
    ) -> AbstractContextManager[Callable[[int], None]]:
        return render.progress(label, total, enabled=not (self.quiet or self.json))

    def out(self, human: str, data: object) -> None:
        if self.json:
            render.emit_json(data)
        elif human and not self.quiet:
            print(human)


# --- the working directory, kept per name node and user across invocations -----------------


def _state_file() -> Path:
    return client_config_path().with_name("state.json")


def _load_state() -> dict[str, str]:
    try:
        data = json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _key(client: AsyncClient) -> str:
    """Whose working directory: a fingerprint of the token (never the token), at which cluster."""
    who = hashlib.sha256(client.token.encode()).hexdigest()[:16] if client.token else "anonymous"
    return f"{who}@{client.namenode}"


def load_cwd(client: AsyncClient) -> str:
    """The saved working directory; at first the home of the user `pydfs login` saw, or /."""
    home = f"/user/{client.user}" if client.user else "/"
    cwd = _load_state().get(_key(client), home)
    try:
        return paths.normalize(cwd)
    except PydfsError:
        return "/"


def save_cwd(client: AsyncClient, cwd: str) -> None:
    state = _load_state()
    state[_key(client)] = cwd
    target = _state_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(tmp, target)


# --- prompts ---------------------------------------------------------------------------------


def confirm(question: str, assume_yes: bool, refusal: str) -> bool:
    """Ask yes/no on the terminal; without one (and without --yes) refuse with *refusal*."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise InvalidArgument(refusal)
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


# --- the commands ----------------------------------------------------------------------------


async def initialize(ctx: Context, args: argparse.Namespace) -> int:
    if not confirm(
        f"This deletes every file and directory on {ctx.client.namenode}. Continue?",
        args.yes,
        "initialize wipes the whole file system: pass --yes to confirm",
    ):
        print("aborted", file=sys.stderr)
        return 1
    reply = await ctx.client.format()
    save_cwd(ctx.client, "/")
    ctx.out(
        f"file system initialized: removed {reply.removed_files} files and "
        f"{reply.removed_blocks} blocks\n{render.space(reply.space)}",
        reply,
    )
    return 0


async def file_create(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out("", await ctx.client.touch(ctx.file_path(args.path)))
    return 0


async def file_read(ctx: Context, args: argparse.Namespace) -> int:
    remote = ctx.path(args.path)
    if args.local == "-":
        out = sys.stdout.buffer
        async for data in ctx.client.read_stream(remote):
            out.write(data)
        out.flush()
        return 0
    local = Path(args.local or paths.basename(remote) or ".")
    if local.is_dir():
        local = local / paths.basename(remote)
    total = (await ctx.client.info(remote)).size if sys.stderr.isatty() else None
    with ctx.progress(f"get {paths.basename(remote)}", total) as advance:
        size = await ctx.client.download(remote, local, overwrite=args.force, progress=advance)
    ctx.out(
        f"{remote} -> {local} ({render.size(size)})",
        {"path": remote, "local": str(local), "size": size},
    )
    return 0


async def file_write(ctx: Context, args: argparse.Namespace) -> int:
    if args.local == "-" and not args.path:
        raise InvalidArgument("give a remote path when reading standard input")
    remote = ctx.file_path(args.path or Path(args.local).name)
    try:
        target = await ctx.client.info(remote)
    except NotFound:
        pass
    else:
        if target.type == "dir":
            remote = paths.join(remote, Path(args.local).name)
    kwargs = {"replication": args.replication, "block_size": args.block_size}
    if args.local == "-":
        with ctx.progress("put stdin", None) as advance:
            status = await ctx.client.write_stream(
                remote, sys.stdin.buffer, progress=advance, **kwargs
            )
    else:
        if Path(args.local).is_dir():
            raise InvalidArgument(f"{args.local} is a directory")
        total = Path(args.local).stat().st_size
        with ctx.progress(f"put {Path(args.local).name}", total) as advance:
            status = await ctx.client.upload(args.local, remote, progress=advance, **kwargs)
    ctx.out(
        f"{args.local} -> {status.path} ({render.size(status.size)}, "
        f"{len(status.blocks or [])} blocks, replication {status.replication})",
        status,
    )
    return 0


async def file_delete(ctx: Context, args: argparse.Namespace) -> int:
    path = ctx.path(args.path)
    await ctx.client.delete(path)
    ctx.out("", {"deleted": path})
    return 0


async def file_info(ctx: Context, args: argparse.Namespace) -> int:
    status = await ctx.client.info(ctx.path(args.path))
    ctx.out(render.status(status), status)
    return 0


async def file_copy(ctx: Context, args: argparse.Namespace) -> int:
    dst = None if args.dst is None else ctx.path(args.dst)
    status = await ctx.client.copy(ctx.path(args.src), dst, overwrite=args.force)
    ctx.out(f"copied to {status.path}", status)
    return 0


async def file_move(ctx: Context, args: argparse.Namespace) -> int:
    status = await ctx.client.move(ctx.path(args.src), ctx.path(args.dst), overwrite=args.force)
    ctx.out(f"moved to {status.path}", status)
    return 0


async def open_directory(ctx: Context, args: argparse.Namespace) -> int:
    target = ctx.path(args.path)
    status = await ctx.client.info(target)
    if status.type != "dir":
        raise InvalidArgument(f"{target} is not a directory")
    save_cwd(ctx.client, target)
    ctx.out(target, {"cwd": target})
    return 0


async def read_directory(ctx: Context, args: argparse.Namespace) -> int:
    path = ctx.path(args.path or ".")
    entries = await ctx.client.ls(path)
    ctx.out(render.listing(entries), entries)
    return 0


async def make_directory(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out("", await ctx.client.mkdir(ctx.path(args.path), parents=args.parents))
    return 0


async def delete_directory(ctx: Context, args: argparse.Namespace) -> int:
    path = ctx.path(args.path)
    try:
        await ctx.client.rmdir(path)
    except DirectoryNotEmpty:
        entries = await ctx.client.ls(path)
        if not args.yes and sys.stdin.isatty():  # about to ask: show what would go
            shown = render.listing(entries[:20])
            more = f"\n... and {len(entries) - 20} more" if len(entries) > 20 else ""
            print(f"{path} is not empty; it holds:\n{shown}{more}", file=sys.stderr)
        if not confirm(
            f"Delete {path} and everything in it?",
            args.yes,
            f"{path} is not empty: pass --yes to delete it and everything in it",
        ):
            print("aborted", file=sys.stderr)
            return 1
        await ctx.client.rmdir(path, recursive=True)
    ctx.out("", {"deleted": path})
    return 0


async def pwd(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out(ctx.cwd, {"cwd": ctx.cwd})
    return 0


Handler = Callable[[Context, argparse.Namespace], Awaitable[int]]


@dataclass(frozen=True)
class Command:
    number: int | None
    name: str
    alias: str
    handler: Handler
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]


def _parse_size(text: str) -> int:
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


def _yes(p: argparse.ArgumentParser) -> None:
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")


def _path(p: argparse.ArgumentParser) -> None:
    p.add_argument("path")


def _read_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="file in pydfs")
    p.add_argument("local", nargs="?", help="local file or directory; - for standard output")
    p.add_argument("-f", "--force", action="store_true", help="overwrite a local file")


def _write_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("local", help="local file; - for standard input")
    p.add_argument("path", nargs="?", help="file or directory in pydfs")
    p.add_argument("-r", "--replication", type=int, help="replicas per block")
    p.add_argument("-b", "--block-size", type=_parse_size, help="block size, e.g. 64M")


def _copy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src")
    p.add_argument("dst", nargs="?")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing file")


def _move_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("-f", "--force", action="store_true", help="replace an existing file")


def _ls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?")


def _mkdir_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path")
    p.add_argument("-p", "--parents", action="store_true", help="create missing parents too")


def _rmdir_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path")
    _yes(p)


COMMANDS: list[Command] = [
    Command(0, "initialize", "format", initialize, "wipe the file system, report the space", _yes),
    Command(1, "file_create", "touch", file_create, "create an empty file", _path),
    Command(2, "file_read", "get", file_read, "download a file", _read_args),
    Command(3, "file_write", "put", file_write, "upload a file", _write_args),
    Command(4, "file_delete", "rm", file_delete, "delete a file", _path),
    Command(5, "file_info", "stat", file_info, "size, owner, blocks and their replicas", _path),
    Command(6, "file_copy", "cp", file_copy, "copy a file inside pydfs", _copy_args),
    Command(7, "file_move", "mv", file_move, "rename or move a file or directory", _move_args),
    Command(8, "open_directory", "cd", open_directory, "change the working directory", _path),
    Command(9, "read_directory", "ls", read_directory, "list a directory", _ls_args),
    Command(10, "make_directory", "mkdir", make_directory, "create a directory", _mkdir_args),
    Command(11, "delete_directory", "rmdir", delete_directory, "delete a directory", _rmdir_args),
    Command(None, "pwd", "", pwd, "print the working directory", lambda p: None),
]
