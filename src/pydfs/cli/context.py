"""What every client command works with: the client, the remote working directory (kept across
invocations per name node and user), output settings, remote globs, and yes/no prompts."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydfs import paths
from pydfs.cli import render
from pydfs.config import client_config_path
from pydfs.errors import (
    ChecksumMismatch,
    DirectoryNotEmpty,
    InvalidArgument,
    InvalidPath,
    NotFound,
    PydfsError,
    Unauthenticated,
)

if TYPE_CHECKING:
    from pydfs.client import AsyncClient


ONE_PATH_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    NotADirectoryError,
    IsADirectoryError,
    DirectoryNotEmpty,
    InvalidPath,
    ChecksumMismatch,
)
"""Errors that concern one path: a command told of one goes on with the others (``rm a b``,
``get -r``), as coreutils do. Any other (the cluster unavailable, out of space, a token
refused) stops it."""


class Expanded(list[str]):
    """Absolute paths from operands; ``one`` when they come from a single operand taken as a
    plain path, whose JSON answer is then an object rather than a list."""

    one = False


@dataclass
class Context:
    client: AsyncClient
    cwd: str
    json: bool
    quiet: bool
    force: bool | None = None  # the command's -f, for the hint on an existing target
    failures: list[BaseException] = field(default_factory=list)

    def path(self, path: str) -> str:
        return paths.normalize(path, self.cwd)

    def file_path(self, path: str) -> str:
        """``path`` for a file to be made: a trailing '/' stays, for the name node to refuse
        (``touch d/name/`` makes no file ``name``)."""
        resolved = self.path(path)
        return resolved + "/" if paths.names_directory(path) and resolved != "/" else resolved

    def report(self, exc: BaseException) -> None:
        """Tell on stderr of one thing not done; the command goes on, and exits non-zero."""
        from pydfs.cli import tell

        self.failures.append(exc)
        tell(exc, self.json, self.force)

    @contextmanager
    def carry_on(self) -> Iterator[None]:
        """Report an error that concerns one path (``ONE_PATH_ERRORS``) and go on after the
        ``with`` block; let any other stop the command."""
        try:
            yield
        except ONE_PATH_ERRORS as exc:
            if isinstance(exc, Unauthenticated):
                raise
            self.report(exc)

    async def expand(self, patterns: list[str], missing_ok: bool = False) -> Expanded:
        """Absolute paths for *patterns*. A pattern with ``*``, ``?`` or ``[`` (quoted, so that
        the local shell leaves it alone) names what it matches in pydfs, sorted, unless a path
        so named exists: that one is taken as it is. A ``\\`` makes the character after it
        plain (``'a\\[1\\].txt'``). A pattern that matches nothing, or a directory it cannot
        read, is reported (unless *missing_ok*) and the others go on."""
        from pydfs.client import tree

        found = Expanded()
        found.one = len(patterns) == 1
        for pattern in patterns:
            with self.carry_on():
                path = self.path(pattern)
                plain = not paths.has_magic(pattern) and "\\" not in pattern
                # a path that exists is itself; if it may not be looked up, the glob says so
                if plain or await tree.exists(self.client, path, lambda exc: None):
                    found.append(path)
                elif not tree.is_pattern(path):
                    found.append(tree.unescape(path))
                else:
                    found.one = False
                    found += await self._glob(pattern, path, missing_ok)
        return found

    async def _glob(self, pattern: str, path: str, missing_ok: bool) -> list[str]:
        from pydfs.client import tree

        unreadable: list[BaseException] = []
        matches = await tree.glob(self.client, path, unreadable.append)
        for exc in unreadable:
            self.report(exc)
        if not matches and not unreadable and not missing_ok:
            raise NotFound(f"{pattern}: no match")
        return matches

    def answer(self, human: str, one: bool, results: Sequence[object]) -> None:
        """``out`` for a command over its operands: *one* plain path answers an object (nothing
        if it failed: its error is told), others a list."""
        if not one:
            self.out(human, results)
        elif results:
            self.out(human, results[0])

    def progress(
        self, label: str, total: int | None
    ) -> AbstractContextManager[Callable[[int], None]]:
        return render.progress(label, total, enabled=not (self.quiet or self.json))

    def out(self, human: str, data: object) -> None:
        if self.json:
            render.emit_json(data)
        elif human and not self.quiet:
            print(human)

    def warn(self, message: str) -> None:
        """A warning on stderr (commands also put it in their JSON answer)."""
        if not self.quiet:
            print(f"pydfs: warning: {message}", file=sys.stderr)


# --- the working directory, kept per name node and user across invocations -----------------


def _state_file() -> Path:
    return client_config_path().with_name("state.json")


def _load_state() -> dict[str, str]:
    try:
        data = json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _key(client: AsyncClient, token: str | None = None) -> str:
    """Whose working directory: a fingerprint of the token (never the token), at which cluster."""
    token = token or client.token
    who = hashlib.sha256(token.encode()).hexdigest()[:16] if token else "anonymous"
    return f"{who}@{client.namenode}"


def home_of(client: AsyncClient) -> str:
    """The home of the user `pydfs login` saw, or /."""
    return f"/user/{client.user}" if client.user else "/"


def load_cwd(client: AsyncClient, previous: bool = False) -> str:
    """The saved working directory (with *previous*, the one before the last ``cd``); at
    first the home of the user `pydfs login` saw, or /."""
    key = _key(client) + (" previous" if previous else "")
    cwd = _load_state().get(key, home_of(client))
    try:
        return paths.normalize(cwd)
    except PydfsError:
        return "/"


def save_cwd(client: AsyncClient, cwd: str, previous: str | None = None) -> None:
    state = _load_state()
    state[_key(client)] = cwd
    if previous is not None:
        state[_key(client) + " previous"] = previous
    _save_state(state)


def _save_state(state: dict[str, str]) -> None:
    target = _state_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(tmp, target)


def carry_cwd(client: AsyncClient, token: str) -> None:
    """Keep the working directories of *client*'s user for its new *token*."""
    state = _load_state()
    old, new = _key(client), _key(client, token)
    for suffix in ("", " previous"):
        if old + suffix in state:
            state[new + suffix] = state.pop(old + suffix)
    _save_state(state)


# --- the terminal ----------------------------------------------------------------------------


@contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C stops a blocking read of the terminal at once. Under ``asyncio.run`` it would
    only cancel the command's task, which sees that after the read returns: the next line
    typed would be taken as the answer."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def confirm(question: str, assume_yes: bool, refusal: str) -> bool:
    """Ask yes/no on the terminal; without one (and without --yes) refuse with *refusal*."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise InvalidArgument(refusal)
    with interruptible():  # before the question: a ^C typed as soon as it shows counts too
        sys.stderr.write(f"{question} [y/N] ")
        sys.stderr.flush()
        answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")
