"""``pydfs``: parse, dispatch, and turn every error into one line and an exit code.

The global options (``--namenode``, ``--json``, ``-q``, ``--debug``) go before or after the
command word. An error is one line on stderr (with ``--json``, one JSON object) and an exit code
that depends only on its kind (``EXIT_CODES``); ``--debug`` shows the traceback that is otherwise
never printed.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from pydfs.errors import PydfsError

# The commands the other modules add, so that a run imports and builds only its own parser.
_MODULES = {
    "account": ("login", "whoami", "chmod", "chown"),
    "admin": ("setrep", "fsck", "admin"),
    "servers": ("namenode", "datanode", "cluster"),
    "browse": ("du", "df", "count", "find", "test"),
    "reading": ("cat", "head", "tail", "checksum"),
    "mount": ("mount",),
}
_FLAGS = ("--json", "-q", "--quiet", "--debug")

EXIT_CODES = {
    "error": 1,  # anything else, such as a local file that cannot be read
    "usage": 2,  # a command line pydfs does not understand
    "not_found": 3,
    "already_exists": 4,
    "permission_denied": 5,
    "unauthenticated": 6,
    "not_a_directory": 7,
    "is_a_directory": 8,
    "directory_not_empty": 9,
    "invalid_path": 10,
    "invalid_argument": 11,
    "unavailable": 12,
    "timeout": 13,
    "insufficient_nodes": 14,
    "no_space": 15,
    "conflict": 16,
    "answer_lost": 16,
    "checksum_mismatch": 17,
    "limit_exceeded": 18,
    "protocol_error": 19,
    "internal": 20,
    "interrupted": 130,
}
"""The exit code of each kind of error (the ``code`` of ``pydfs.errors``); stable, so scripts
may test for them. A broken pipe (``pydfs cat f | head``) ends quietly with 141, as ``cat``."""

GLOBALS = "global options (before or after the command)"


class UsageError(SystemExit):
    """A command line argparse refused (exit 2): one line, naming the command's own help."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(2)
        self.message = f"{prog}: {message} (see `{prog} --help`)"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        wrong = re.search(r"invalid choice: '?([^' ]*)'?", message)
        choices = next(
            (a.choices for a in self._actions if isinstance(a, argparse._SubParsersAction)), None
        )
        if wrong and choices:
            import difflib

            word = wrong.group(1)
            close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(f'`{c}`' for c in close)}?" if close else ""
            message = f"unknown command {word!r}{hint}"
        raise UsageError(self.prog, message)


def _add_globals(p: argparse.ArgumentParser, top: bool) -> None:
    """The global options, on the top parser (with their defaults) and on every command's
    (defaults suppressed, so that a value given before the command word stays)."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    group = p.add_argument_group(GLOBALS)
    taken = p._option_string_actions
    if "--namenode" not in taken:  # the datanode's own --namenode means the same
        group.add_argument(
            "--namenode",
            metavar="URL[,URL...]",
            default=default(None),
            help="name node URL, or every name node's, comma-separated (else $PYDFS_NAMENODE, "
            "else the saved config)",
        )
    group.add_argument(
        "--json", action="store_true", default=default(False), help="machine-readable output"
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default(False),
        help="print nothing on success",
    )
    group.add_argument(
        "--debug", action="store_true", default=default(False), help="show tracebacks"
    )


def _every_subparser(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found: dict[int, argparse.ArgumentParser] = {}
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if id(child) not in found:
                    found[id(child)] = child
                    found.update((id(c), c) for c in _every_subparser(child))
    return list(found.values())


def _parser(command: str | None = None, typed: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; with a *command* it knows, of that one only, which parses
    its line alike and saves building some fifty parsers a run. Its usage and errors name it
    as *typed* (``pydfs stat``, not ``pydfs file_info``)."""
    from pydfs.cli.commands import COMMANDS

    known = {w for c in COMMANDS for w in (c.name, c.alias) if w}.union(*_MODULES.values())
    if command not in known:
        command = None
    table = "\n".join(
        f"  {'' if c.number is None else c.number:>2}  {c.name:<17} {c.alias:<6} {c.help}"
        for c in COMMANDS
    )
    others = ", ".join(name for names in _MODULES.values() for name in names)
    parser = _Parser(
        prog="pydfs",
        description="pydfs: a distributed file system. `pydfs COMMAND --help` for a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"client commands (by number, name or alias):\n{table}\n\nmore commands: {others}"
        "\n\nExit codes: 0 success, 1 an error, 2 bad usage, 3 not found, 4 already exists, 5 "
        "permission denied;\nthe README lists them all (stable per kind of error).",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    _add_globals(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for c in COMMANDS:
        if command in (None, c.name, c.alias):
            also = [str(c.number)] if c.number is not None else []
            also += [w for w in (c.name, c.alias) if w]
            p = sub.add_parser(
                c.name,
                prog=f"pydfs {typed}" if command and typed else None,
                aliases=[c.alias] if c.alias else [],
                help=c.help,
                description=f"{c.help[0].upper()}{c.help[1:]}.\n\n{c.description}".rstrip()
                + (f"\n\nAlso spelled: pydfs {', pydfs '.join(also)}" if len(also) > 1 else ""),
                formatter_class=argparse.RawDescriptionHelpFormatter,
                add_help=c.add_help,
            )
            c.arguments(p)
            p.set_defaults(handler=c.handler)
    for module, names in _MODULES.items():
        if command is None or command in names:
            importlib.import_module(f"pydfs.cli.{module}").add_parsers(sub)
    for child in _every_subparser(parser):
        _add_globals(child, top=False)
    return parser


class _Version(argparse.Action):
    """``--version``, which looks the version up only when asked (that costs 30 ms)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> NoReturn:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"pydfs {version('pydfs')}")
        except PackageNotFoundError:
            print("pydfs (version unknown)")
        parser.exit()


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
    from pydfs.cli.context import Context, load_cwd
    from pydfs.client import AsyncClient

    async with AsyncClient(args.namenode) as client:
        ctx = Context(client, load_cwd(client), args.json, args.quiet, getattr(args, "force", None))
        code: int = await args.handler(ctx, args)
        return code or failed(ctx.failures)


def failed(failures: list[BaseException]) -> int:
    """The exit code of a command that told *failures* and went on, as coreutils do: the code
    of their kind when they share one, else 1; 0 for none."""
    kinds = {_code(exc) for exc in failures}
    return EXIT_CODES.get(kinds.pop(), 1) if len(kinds) == 1 else 1 if kinds else 0


def tell(exc: BaseException, as_json: bool, force: bool | None = None) -> None:
    """One line on stderr for an error a command goes on after."""
    _fail(_code(exc), _message(exc, force), as_json)


def main(argv: Sequence[str] | None = None) -> int:
    typed_line = list(sys.argv[1:] if argv is None else argv)
    line = _by_number(typed_line)
    want_json = "--json" in line
    try:
        typed = _command(typed_line)
        parser = _parser(_command(line), typed)
        args, extra = parser.parse_known_args(line)
        if extra:  # named by the command they were given to, not by the top level
            command = getattr(args, "command", None)
            prog = f"pydfs {typed or command}" if command else "pydfs"
            raise UsageError(prog, f"unrecognized arguments: {' '.join(extra)}")
    except UsageError as exc:
        return _fail("usage", exc.message, want_json)
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
        print(file=sys.stderr)  # off the line of a prompt
        return _fail("interrupted", "interrupted", args.json)
    except BrokenPipeError:
        _quiet_stdout()
        return 141
    except (PydfsError, OSError) as exc:
        if args.debug:
            raise
        return _fail(_code(exc), _message(exc, getattr(args, "force", None)), args.json)


def _fail(code: str, message: str, as_json: bool) -> int:
    exit_code = EXIT_CODES.get(code, 1)
    try:
        if as_json:
            import json

            error = {"error": code, "message": message, "exit": exit_code}
            sys.stderr.write(json.dumps(error) + "\n")
        else:
            sys.stderr.write(f"{message}\n" if code == "usage" else f"pydfs: error: {message}\n")
        sys.stderr.flush()
    except BrokenPipeError:
        pass
    return exit_code


def _quiet_stdout() -> None:
    """After a reader went away, let the interpreter's final flush of stdout fail silently."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


_BUILTIN_CODES: list[tuple[type[BaseException], str]] = [
    (FileNotFoundError, "not_found"),
    (FileExistsError, "already_exists"),
    (PermissionError, "permission_denied"),
    (NotADirectoryError, "not_a_directory"),
    (IsADirectoryError, "is_a_directory"),
    (TimeoutError, "timeout"),
    (ConnectionError, "unavailable"),
]


def _code(exc: BaseException) -> str:
    if isinstance(exc, PydfsError):
        return exc.code
    return next((code for kind, code in _BUILTIN_CODES if isinstance(exc, kind)), "error")


def _message(exc: BaseException, force: bool | None) -> str:
    if isinstance(exc, PydfsError):
        message = exc.message
    elif isinstance(exc, OSError) and exc.filename is not None:
        message = f"{exc.filename}: {exc.strerror or exc}"
    else:
        message = str(exc) or exc.__class__.__name__
    refused = _code(exc) == "already_exists" and force is False
    if refused and "--force" not in message:
        message += " (use -f/--force to replace it)"
    return message
