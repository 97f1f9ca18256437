"""Backups of the metadata, taken by the name node while it serves: one an admin downloads
(``pydfs admin backup``), and copies kept in a directory on a schedule (``backup_every``).

Each is the store's own consistent copy (``Store.backup``: for SQLite, the backup API on a
connection of its own, in a worker thread), taken into a new file. A download is answered from
that file opened and already unlinked, so that nothing is left behind however the transfer
ends, in constant memory (sendfile); its SHA-256 travels in a header for the client to check.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import sqlite3
import time
from pathlib import Path

from pydfs import wire
from pydfs.calls import Answer, FileRange
from pydfs.errors import NoSpace, PydfsError, Unavailable
from pydfs.namenode.store import Store
from pydfs.namenode.store.interface import BackupInfo

log = logging.getLogger("pydfs.namenode")

TEMP_PREFIX = ".backup-"
KEPT_PREFIX = "pydfs-metadata-"
CONTENT_TYPE = "application/vnd.sqlite3"


class Backups:
    def __init__(
        self,
        store: Store,
        data_dir: Path,
        *,
        every: float = 0.0,
        directory: Path | None = None,
        keep: int = 7,
    ) -> None:
        self.store = store
        self.data_dir = data_dir
        self.every = every  # seconds between kept copies; 0: none
        self.directory = directory or data_dir / "backups"
        self.keep = keep
        self._one_at_a_time = asyncio.Lock()  # each copy takes the database's size on disk

    def sweep(self) -> None:
        """Remove the copies a process that died while taking one left behind."""
        for stale in [
            *self.data_dir.glob(f"{TEMP_PREFIX}*"),
            *self.directory.glob(f"{TEMP_PREFIX}*"),
        ]:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                log.info("removed %s, a backup left unfinished", stale)

    async def _take(self, dest: Path) -> BackupInfo:
        async with self._one_at_a_time:
            try:
                return await self.store.backup(dest)
            except BaseException as exc:
                with contextlib.suppress(FileNotFoundError):
                    dest.unlink()
                if isinstance(exc, OSError | sqlite3.OperationalError) and not isinstance(
                    exc, PydfsError
                ):
                    raise disk_error(dest, exc) from None
                raise

    async def download(self) -> Answer:
        """A fresh copy as an answer whose body is the file."""
        tmp = self.data_dir / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            info = await self._take(tmp)
            f = open(tmp, "rb")  # noqa: SIM115 (closed by the server once sent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        log.info("backup of the metadata taken for download: %d bytes", info.size)
        headers = {
            wire.H_SHA256: info.sha256,
            wire.H_SCHEMA: str(info.schema),
            wire.H_TAKEN: repr(info.taken),
        }
        return Answer(200, b"", CONTENT_TYPE, headers, FileRange(f, 0, info.size, _nothing))

    async def run_once(self) -> Path:
        """Take a copy into the backup directory, then drop the oldest beyond ``keep``."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        now = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        final = self.directory / f"{KEPT_PREFIX}{stamp}.sqlite3"
        tmp = self.directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        info = await self._take(tmp)
        os.replace(tmp, final)  # not fsync'd: a copy a crash takes back is taken again
        kept = sorted(self.directory.glob(f"{KEPT_PREFIX}*.sqlite3"))
        for old in kept[: -self.keep]:
            old.unlink()
        log.info("backup of the metadata in %s: %d bytes", final, info.size)
        return final

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.run_once()
            except PydfsError as exc:
                log.error("scheduled backup of the metadata failed: %s", exc)
            except Exception:
                log.exception("scheduled backup of the metadata failed")


def disk_error(dest: Path, exc: OSError | sqlite3.OperationalError) -> PydfsError:
    """What a backup that the name node's disk refused is told as: one line naming the
    directory, ``NoSpace`` for a full disk (SQLite says "database or disk is full")."""
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    message = f"cannot take a backup of the metadata in {dest.parent} on the name node: {why}"
    return NoSpace(message) if full or "full" in why else Unavailable(message)


def _nothing() -> None:
    pass
