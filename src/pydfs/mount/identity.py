"""Who owns what, as the local machine sees it.

The mount acts as one pydfs user (its token's); the name node checks every operation as that
user. Names map to local ids by name: the mounting user's own name (and its group of the same
name) to the uid and gid that run the mount, so that its files look like the caller's own (git,
ssh and editors trust only those); any other name to the local user or group of that name, and
an unknown one to ``nobody``.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
from functools import cache

import pyfuse3

from pydfs import wire

R, W, X = 4, 2, 1


def _id_of(lookup: str, names: tuple[str, ...], fallback: int) -> int:
    for name in names:
        try:
            if lookup == "user":
                return pwd.getpwnam(name).pw_uid
            return grp.getgrnam(name).gr_gid
        except KeyError:
            continue
    return fallback


NOBODY = _id_of("user", ("nobody",), 65534)
NOGROUP = _id_of("group", ("nogroup", "nobody"), 65534)


class Identity:
    def __init__(self, me: wire.UserInfo) -> None:
        self.me = me
        self.groups = frozenset(me.groups) | {me.name}  # each user is alone in its own group
        self.uid = os.getuid()
        self.gid = os.getgid()

    @cache  # noqa: B019 - one Identity per mount, names are few
    def uid_of(self, owner: str) -> int:
        return self.uid if owner == self.me.name else _id_of("user", (owner,), NOBODY)

    @cache  # noqa: B019
    def gid_of(self, group: str) -> int:
        return self.gid if group == self.me.name else _id_of("group", (group,), NOGROUP)

    def owner_named(self, uid: int) -> str:
        """The pydfs user a ``chown`` to *uid* means (the mounting uid is the mount's user)."""
        if uid == self.uid:
            return self.me.name
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            raise pyfuse3.FUSEError(errno.EINVAL) from None  # no name to give the name node

    def group_named(self, gid: int) -> str:
        if gid == self.gid:
            return self.me.name
        try:
            return grp.getgrgid(gid).gr_name
        except KeyError:
            raise pyfuse3.FUSEError(errno.EINVAL) from None

    def may(self, status: wire.FileStatus, want: int) -> bool:
        """Would the name node grant the mount's user *want* (R|W|X) on *status*? For
        ``access(2)``; every operation is still checked by the name node itself."""
        if self.me.admin:
            return not want & X or status.type == "dir" or bool(status.mode & 0o111)
        if status.owner == self.me.name:
            bits = status.mode >> 6
        elif status.group in self.groups:
            bits = status.mode >> 3
        else:
            bits = status.mode
        return bits & want == want
