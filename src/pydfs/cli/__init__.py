"""``pydfs``: parse, dispatch, and turn every error into one line and an exit code.

Exit codes: 0 success, 1 an error the message explains, 2 bad usage, 130 interrupted.
``--debug`` shows the traceback that is otherwise never printed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pydfs.errors import PydfsError

# The commands the other modules add, so that a run imports and builds only its own parser.
_MODULES = {
    "account": ("login", "whoami", "chmod", "chown"),
    "admin": ("setrep", "fsck", "admin"),
    "servers": ("namenode", "datanode", "cluster"),
    "mount": ("mount",),
}
_FLAGS = ("--json", "-q", "--quiet", "--debug")


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; with a *command* it knows, of that one only, which parses
    its line alike and saves building some thirty parsers a run."""
    from pydfs.cli.commands import COMMANDS

    known = {w for c in COMMANDS for w in (c.name, c.alias) if w}.union(*_MODULES.values())
    if command not in known:
        command = None
    table = "\n".join(
        f"  {'' if c.number is None else c.number:>2}  {c.name:<17} {c.alias:<6} {c.help}"
        for c in COMMANDS
    )
    parser = argparse.ArgumentParser(
        prog="pydfs",
        description="pydfs: a distributed file system.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"client commands (by number, name or alias):\n{table}",
    )
    parser.add_argument("--namenode", help="name node URL (else $PYDFS_NAMENODE, else the config)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for c in COMMANDS:
        if command in (None, c.name, c.alias):
            p = sub.add_parser(c.name, aliases=[c.alias] if c.alias else [], help=c.help)
            c.arguments(p)
            p.set_defaults(handler=c.handler)
    for module, names in _MODULES.items():
        if command is None or command in names:
            importlib.import_module(f"pydfs.cli.{module}").add_parsers(sub)
    return parser


def _command(argv: list[str]) -> str | None:
    """The command word, when only top-level options spelled in full come before it, so that
    argparse reads it alike; None for anything else (help, an abbreviation, no command)."""
    words = iter(argv)
    for arg in words:
        if arg == "--namenode":
            next(words, None)
        elif arg not in _FLAGS and not arg.startswith("--namenode="):
            return None if arg.startswith("-") else arg
    return None


def _by_number(argv: list[str]) -> list[str]:
    """``pydfs 5 PATH`` is ``pydfs file_info PATH``: the commands keep their numbers."""
    from pydfs.cli.commands import COMMANDS

    names = {str(c.number): c.name for c in COMMANDS if c.number is not None}
    skip = False
    for i, arg in enumerate(argv):
        if skip:  # the value of --namenode
            skip = False
        elif arg == "--namenode":
            skip = True
        elif not arg.startswith("-"):
            if arg in names:
                return [*argv[:i], names[arg], *argv[i + 1 :]]
            break
    return argv


async def _run_client(args: argparse.Namespace) -> int:
    from pydfs.cli.commands import Context, load_cwd
    from pydfs.client import AsyncClient

    async with AsyncClient(args.namenode, blocking_rpc=True) as client:
        ctx = Context(client, load_cwd(client), args.json, args.quiet)
        code: int = await args.handler(ctx, args)
        return code


def main(argv: Sequence[str] | None = None) -> int:
    line = _by_number(list(sys.argv[1:] if argv is None else argv))
    parser = _parser(_command(line))
    args = parser.parse_args(line)
    if args.command is None:
        parser.print_help()
        return 2
    if args.debug:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    try:
        if hasattr(args, "run"):
            code: int = args.run(args)
            return code
        import asyncio

        return asyncio.run(_run_client(args))
    except KeyboardInterrupt:
        print("pydfs: interrupted", file=sys.stderr)
        return 130
    except (PydfsError, OSError) as exc:
        if args.debug:
            raise
        print(f"pydfs: error: {_message(exc)}", file=sys.stderr)
        return 1


def _message(exc: BaseException) -> str:
    if isinstance(exc, PydfsError):
        return exc.message
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc) or exc.__class__.__name__
