"""What every client command works with: the client, the remote working directory (kept across
invocations per name node and user), output settings, remote globs, and yes/no prompts."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydfs import paths
from pydfs.cli import render
from pydfs.config import client_config_path
from pydfs.errors import InvalidArgument, NotFound, PydfsError

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

    async def expand(self, patterns: list[str]) -> list[str]:
        """Absolute paths for *patterns*: a pattern with ``*``, ``?`` or ``[`` (quoted, so that
        the local shell leaves it alone) names what it matches in pydfs, sorted; a pattern
        that matches nothing is an error, as in a shell with ``failglob``."""
        from pydfs.client import tree

        found: list[str] = []
        for pattern in patterns:
            if not paths.has_magic(pattern):
                found.append(self.path(pattern))
                continue
            matches = await tree.glob(self.client, self.path(pattern))
            if not matches:
                raise NotFound(f"{pattern}: no match")
            found += matches
        return found

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


def _key(client: AsyncClient) -> str:
    """Whose working directory: a fingerprint of the token (never the token), at which cluster."""
    who = hashlib.sha256(client.token.encode()).hexdigest()[:16] if client.token else "anonymous"
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
    target = _state_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(tmp, target)


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
