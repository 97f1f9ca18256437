"""A metadata backup the name node's disk refuses (full, not writable, gone) is one line naming
the directory and why, not an internal error; nothing of it is left behind."""

from __future__ import annotations

import errno
import os
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pydfs import errors
from pydfs.namenode.backups import Backups
from pydfs.namenode.store.sqlite import Store

pytestmark = pytest.mark.asyncio


class RefusingStore:
    """A store whose copy fails as the disk made it fail, after writing part of it."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    async def backup(self, dest: Path) -> Any:
        dest.write_bytes(b"part of a copy")
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "kind", "why"),
    [
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), errors.NoSpace, "No space left"),
        (sqlite3.OperationalError("database or disk is full"), errors.NoSpace, "disk is full"),
        (PermissionError(errno.EACCES, os.strerror(errno.EACCES)), errors.Unavailable, "denied"),
    ],
)
async def test_a_backup_the_disk_refuses_is_one_clear_line(
    tmp_path: Path, exc: BaseException, kind: type[errors.PydfsError], why: str
) -> None:
    backups = Backups(RefusingStore(exc), tmp_path, directory=tmp_path / "kept")  # type: ignore[arg-type]
    for take in (backups.download, backups.run_once):
        with pytest.raises(kind) as raised:
            await take()
        message = str(raised.value)
        assert why in message and str(tmp_path) in message and "\n" not in message
    assert not list(tmp_path.rglob(".backup-*"))


async def test_a_backup_into_a_directory_that_is_gone_names_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "ns.sqlite3")
    try:
        gone = tmp_path / "gone"
        with pytest.raises(
            errors.Unavailable, match=re.escape(f"{gone} on the name node: No such file")
        ):
            await Backups(store, gone).download()
    finally:
        store.close()


async def test_what_the_store_refuses_itself_passes_unchanged(tmp_path: Path) -> None:
    refused = errors.InvalidArgument("metadata on PostgreSQL is backed up by PostgreSQL")
    with pytest.raises(errors.InvalidArgument, match="by PostgreSQL"):
        await Backups(RefusingStore(refused), tmp_path).download()  # type: ignore[arg-type]
