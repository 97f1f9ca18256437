"""Users, their tokens, and the POSIX permission check every namespace operation makes.

A user is a name, a bearer token (kept as a hash), admin or not, and a set of groups; each user is
also the only member of a group of its own name. Admins are superusers: permission bits do not
apply to them (as root on Unix, or the HDFS superuser).

The name node's own identity, ``root``, owns what it makes (``/``, ``/user``, ``/tmp``) and
groups what existed before permissions did. It is no user: ``root``, like the other names the
name node uses for its callers (``datanode``, ``anonymous``), is reserved, and cannot be a user's
or a group's name. A database from before the reservation that holds a user with such a name
loses that user at start (a warning says so): it would own ``/user`` and ``/tmp``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from pydfs import paths, tokens, wire
from pydfs.errors import Conflict, InvalidArgument, NotFound, Unauthenticated
from pydfs.namenode.store import Store, Tx
from pydfs.namenode.store.interface import UserRow

BOOTSTRAP_ADMIN = "admin"
TOKEN_FILE = "admin.token"
SYSTEM = "root"  # owner and group of what the name node makes itself
RESERVED = frozenset({SYSTEM, "datanode", "anonymous"})  # see namenode.app: who calls

log = logging.getLogger("pydfs.namenode")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    admin: bool = False
    groups: frozenset[str] = frozenset()

    def in_group(self, group: str) -> bool:
        return group == self.name or group in self.groups

    def info(self) -> wire.UserInfo:
        return wire.UserInfo(self.name, self.admin, sorted(self.groups), home_of(self.name))


def home_of(name: str) -> str:
    return f"/user/{name}"


def validate_user_name(name: str) -> str:
    """ASCII letters, digits, ``.``, ``_`` and ``-``, as portable Unix user names: no two names
    that look alike (U+0430, a Cyrillic letter, for the "a" of "admin"), and no reserved one."""
    if (
        not 0 < len(name) <= 64
        or not name.isascii()
        or not all(c.isalnum() or c in "._-" for c in name)
    ):
        raise InvalidArgument(
            f"invalid user or group name {name!r}: use ASCII letters, digits, '.', '_' or '-'"
            " (at most 64)"
        )
    if name.startswith(("-", ".")):
        raise InvalidArgument(f"invalid user or group name {name!r}")
    if name in RESERVED:
        raise InvalidArgument(f"{name!r} is reserved for pydfs itself: choose another name")
    return paths.validate_name(name)


TOKEN_CACHE_SECONDS = 1.0  # how long a token, once looked up, is known without the store
_MAX_KNOWN = 10_000


class Users:
    """The user table, and the tokens looked up in the last ``TOKEN_CACHE_SECONDS``: a token
    revoked through this name node stops working at once, through another one sharing the
    store within that second."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._known: dict[str, tuple[User, float]] = {}  # token hash → user, looked up when
        self._epoch = 0  # changes of users begun or ended

    def known(self, token: str) -> User | None:
        """The user of *token* if it was looked up just now; None: ask ``authenticate``."""
        found = self._known.get(tokens.hash_user_token(token))
        if found is not None and self.clock() - found[1] < TOKEN_CACHE_SECONDS:
            return found[0]
        return None

    async def drop_reserved(self) -> None:
        """Remove users named as pydfs itself, and reserved groups from users (see above)."""
        async with self._writing() as tx:
            rows = await tx.users.all()
            doomed = [u.name for u in rows if u.name in RESERVED]
            regroup = [
                u for u in rows if u.name not in RESERVED and RESERVED.intersection(u.groups)
            ]
            await tx.users.remove(doomed)
            for u in regroup:
                await tx.users.set_groups(u.name, tuple(g for g in u.groups if g not in RESERVED))
        for name in doomed:
            log.warning(
                "removed user %r: the name is reserved for pydfs itself (its files now belong "
                "to the system; an admin may add the user under another name and chown them)",
                name,
            )
        for u in regroup:
            log.warning("removed reserved groups from user %r", u.name)

    async def authenticate(self, token: str) -> User:
        token_hash = tokens.hash_user_token(token)
        epoch = self._epoch
        async with self.store.read() as tx:
            row = await tx.users.by_token_hash(token_hash)
        if row is None:
            raise Unauthenticated("invalid or revoked token (see `pydfs login`)")
        user = _user(row)
        if epoch == self._epoch:  # no change of users here began or ended meanwhile
            if len(self._known) >= _MAX_KNOWN:
                self._known.clear()
            self._known[token_hash] = (user, self.clock())
        return user

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[Tx]:
        """``store.write()`` for a change of users: what is known of tokens is forgotten as
        it begins and once it is over, and no lookup made meanwhile is kept."""
        self._epoch += 1
        self._known.clear()
        try:
            async with self.store.write() as tx:
                yield tx
        finally:
            self._epoch += 1
            self._known.clear()

    async def get(self, name: str) -> User:
        async with self.store.read() as tx:
            row = await tx.users.by_name(name)
        if row is None:
            raise NotFound(f"no such user {name!r}")
        return _user(row)

    async def all(self) -> list[wire.UserInfo]:
        async with self.store.read() as tx:
            return [_user(row).info() for row in await tx.users.all()]

    async def add(
        self, name: str, *, admin: bool, groups: list[str], token: str | None = None
    ) -> str:
        """Create a user; returns its token, which is shown once and never stored."""
        validate_user_name(name)
        for group in groups:
            validate_user_name(group)
        token = token or tokens.new_user_token()
        row = UserRow(name, tokens.hash_user_token(token), admin, tuple(groups), time.time())
        async with self._writing() as tx:
            await tx.users.add(row)
        return token

    async def remove(self, name: str) -> None:
        """Revoke a user (its files stay, owned by the name, as with userdel). The last admin
        stays: without one, no user could be added or given a new token again."""
        async with self._writing() as tx:
            await tx.users.lock()  # another name node may be removing another admin now
            user = await tx.users.by_name(name)
            if user is None:
                raise NotFound(f"no such user {name!r}")
            if user.admin and sum(u.admin for u in await tx.users.all()) == 1:
                raise Conflict(
                    f"{name!r} is the last administrator and cannot be removed: make another "
                    "admin first (`pydfs admin user add NAME --admin`)"
                )
            await tx.users.remove([name])

    async def reset_token(self, name: str) -> str:
        """Give a user a new token; the old one stops working at once."""
        token = tokens.new_user_token()
        async with self._writing() as tx:
            if await tx.users.by_name(name) is None:
                raise NotFound(f"no such user {name!r}")
            await tx.users.set_token_hash(name, tokens.hash_user_token(token))
        return token

    async def bootstrap(self, token_file: Path) -> str | None:
        """On a fresh name node, create the first admin and leave its token in *token_file*
        (mode 0600) for the operator; returns the token, or None if users exist already."""
        async with self.store.read() as tx:
            if await tx.users.all():
                return None
        token = _leave_token(token_file)
        return await self.add(BOOTSTRAP_ADMIN, admin=True, groups=[], token=token)

    async def reset_admin(self, token_file: Path) -> str:
        """The operator's way back in (``pydfs namenode reset-admin``, with the name node
        stopped): the user ``admin`` is made again, or made an admin again, with a new token
        left in *token_file*. Returns what was done."""
        token = _leave_token(token_file)
        async with self._writing() as tx:
            old = await tx.users.by_name(BOOTSTRAP_ADMIN)
            if old is not None:
                await tx.users.remove([BOOTSTRAP_ADMIN])
            row = UserRow(
                BOOTSTRAP_ADMIN,
                tokens.hash_user_token(token),
                True,
                old.groups if old else (),
                old.ctime if old else time.time(),
            )
            await tx.users.add(row)
        if old is None:
            return f"user {BOOTSTRAP_ADMIN!r} made again, as an admin"
        return f"user {BOOTSTRAP_ADMIN!r} is an admin, with a new token"


def _leave_token(token_file: Path) -> str:
    """A new token, written durably to *token_file* (mode 0600) before any user has it, so
    that a crash cannot leave an admin whose token no one knows."""
    token = tokens.new_user_token()
    tmp = token_file.with_name(token_file.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, token_file)
    return token


def _user(row: UserRow) -> User:
    return User(row.name, row.admin, frozenset(row.groups))
