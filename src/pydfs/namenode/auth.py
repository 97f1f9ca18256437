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
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from pydfs import paths, tokens, wire
from pydfs.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, Unauthenticated
from pydfs.namenode.store import Store

R, W, X = 4, 2, 1
STICKY = 0o1000
MODE_BITS = 0o1777
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


def allowed(user: User | None, owner: str, group: str, mode: int, want: int) -> bool:
    """May *user* have the *want* bits (R|W|X) on an inode? ``None`` is the name node itself."""
    if user is None or user.admin:
        return True
    if user.name == owner:
        bits = mode >> 6
    elif user.in_group(group):
        bits = mode >> 3
    else:
        bits = mode
    return bits & want == want


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


class Users:
    """The user table, with an in-memory index by token hash (rebuilt on every change)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._by_hash: dict[str, User] = {}
        self._by_name: dict[str, User] = {}
        self._drop_reserved()
        self._reload()

    def _drop_reserved(self) -> None:
        """Remove users named as pydfs itself, and reserved groups from users (see above)."""
        rows = self.store.db.execute("SELECT name, groups FROM users").fetchall()
        doomed = [name for name, _ in rows if name in RESERVED]
        regroup = [
            (",".join(g for g in groups.split(",") if g not in RESERVED), name)
            for name, groups in rows
            if name not in RESERVED and RESERVED.intersection(groups.split(","))
        ]
        if not doomed and not regroup:
            return
        with self.store.write() as db:
            db.executemany("DELETE FROM users WHERE name = ?", ((n,) for n in doomed))
            db.executemany("UPDATE users SET groups = ? WHERE name = ?", regroup)
        for name in doomed:
            log.warning(
                "removed user %r: the name is reserved for pydfs itself (its files now belong "
                "to the system; an admin may add the user under another name and chown them)",
                name,
            )
        for _, name in regroup:
            log.warning("removed reserved groups from user %r", name)

    def _reload(self) -> None:
        rows = self.store.db.execute("SELECT name, token_hash, admin, groups FROM users")
        self._by_hash, self._by_name = {}, {}
        for name, token_hash, admin, groups in rows:
            user = User(name, bool(admin), frozenset(g for g in groups.split(",") if g))
            self._by_hash[token_hash] = user
            self._by_name[name] = user

    def authenticate(self, token: str) -> User:
        user = self._by_hash.get(tokens.hash_user_token(token))
        if user is None:
            raise Unauthenticated("invalid or revoked token (see `pydfs login`)")
        return user

    def get(self, name: str) -> User:
        user = self._by_name.get(name)
        if user is None:
            raise NotFound(f"no such user {name!r}")
        return user

    def exists(self, name: str) -> bool:
        return name in self._by_name

    def all(self) -> list[wire.UserInfo]:
        return [self._by_name[n].info() for n in sorted(self._by_name)]

    def add(self, name: str, *, admin: bool, groups: list[str], token: str | None = None) -> str:
        """Create a user; returns its token, which is shown once and never stored."""
        validate_user_name(name)
        for group in groups:
            validate_user_name(group)
        token = token or tokens.new_user_token()
        row = (name, tokens.hash_user_token(token), int(admin), ",".join(groups), time.time())
        try:
            with self.store.write() as db:
                db.execute(
                    "INSERT INTO users (name, token_hash, admin, groups, ctime) "
                    "VALUES (?, ?, ?, ?, ?)",
                    row,
                )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"user {name!r} already exists") from None
        self._reload()
        return token

    def remove(self, name: str) -> None:
        """Revoke a user (its files stay, owned by the name, as with userdel). The last admin
        stays: without one, no user could be added or given a new token again."""
        user = self.get(name)
        if user.admin and sum(u.admin for u in self._by_name.values()) == 1:
            raise Conflict(
                f"{name!r} is the last administrator and cannot be removed: make another "
                "admin first (`pydfs admin user add NAME --admin`)"
            )
        with self.store.write() as db:
            db.execute("DELETE FROM users WHERE name = ?", (name,))
        self._reload()

    def reset_token(self, name: str) -> str:
        """Give a user a new token; the old one stops working at once."""
        self.get(name)
        token = tokens.new_user_token()
        with self.store.write() as db:
            db.execute(
                "UPDATE users SET token_hash = ? WHERE name = ?",
                (tokens.hash_user_token(token), name),
            )
        self._reload()
        return token

    def bootstrap(self, token_file: Path) -> str | None:
        """On a fresh name node, create the first admin and leave its token in *token_file*
        (mode 0600) for the operator; returns the token, or None if users exist already."""
        if self._by_name:
            return None
        token = _leave_token(token_file)
        return self.add(BOOTSTRAP_ADMIN, admin=True, groups=[], token=token)

    def reset_admin(self, token_file: Path) -> str:
        """The operator's way back in (``pydfs namenode reset-admin``, with the name node
        stopped): the user ``admin`` is made again, or made an admin again, with a new token
        left in *token_file*. Returns what was done."""
        token = _leave_token(token_file)
        if BOOTSTRAP_ADMIN not in self._by_name:
            self.add(BOOTSTRAP_ADMIN, admin=True, groups=[], token=token)
            return f"user {BOOTSTRAP_ADMIN!r} made again, as an admin"
        with self.store.write() as db:
            db.execute(
                "UPDATE users SET token_hash = ?, admin = 1 WHERE name = ?",
                (tokens.hash_user_token(token), BOOTSTRAP_ADMIN),
            )
        self._reload()
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
