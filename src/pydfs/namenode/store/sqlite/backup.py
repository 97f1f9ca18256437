"""Copies of the SQLite metadata: taken while the name node serves (``take``), checked
(``check``), and put in a stopped name node's place (``install``).

A copy is taken with SQLite's backup API, over a connection of its own, in one step, in a
worker thread: one read transaction, so the copy is the database at one moment, and in WAL mode
it blocks no writer (the log grows meanwhile; checkpoints catch up after). A backup in several
steps (``pages=N``) would start again each time another connection writes, which on a busy name
node may be forever, and the event loop would wait for none of it anyway.

A copy is one file, without a ``-wal`` beside it (rollback-journal mode), mode 0600 (it holds
every token's hash), checked with ``PRAGMA integrity_check`` and made durable before its
SHA-256 is computed. It records when it was taken (table ``provenance``); ``install`` records
when it was restored, which makes the name node keep blocks no file names (``store.interface``'s
``Restore``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import NamedTuple

from pydfs.errors import InternalError, InvalidArgument
from pydfs.namenode.store import migrations
from pydfs.namenode.store.interface import BackupInfo

log = logging.getLogger("pydfs.namenode")

CHUNK = 1 << 20


class Checked(NamedTuple):
    """What ``check`` found in a copy."""

    schema: int
    taken: float | None
    files: int


def take(source: Path, dest: Path) -> BackupInfo:
    """Copy the database *source* (in use) to *dest*, which must not exist. Blocking."""
    os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    taken = time.time()
    src = sqlite3.connect(source)
    try:
        dst = sqlite3.connect(dest, isolation_level=None)
        try:
            src.backup(dst)  # every page in one step: one snapshot
            dst.execute("PRAGMA journal_mode=DELETE")
            # Marked restored already: a name node started on a copy put in place by hand,
            # not by ``install``, keeps the blocks it does not know as well.
            dst.execute(
                "INSERT INTO provenance (one, taken, restored) VALUES (1, ?, ?) "
                "ON CONFLICT (one) DO UPDATE SET taken = excluded.taken, "
                "restored = excluded.restored",
                (taken, taken),
            )
            if problem := _integrity(dst):
                raise InternalError(f"the metadata copy fails SQLite's integrity check: {problem}")
            (schema,) = dst.execute("PRAGMA user_version").fetchone()
        finally:
            dst.close()
    finally:
        src.close()
    digest = hashlib.sha256()
    with open(dest, "rb") as f:
        os.fsync(f.fileno())
        while chunk := f.read(CHUNK):
            digest.update(chunk)
        size = f.tell()
    return BackupInfo(size, digest.hexdigest(), int(schema), taken)


def check(path: Path) -> Checked:
    """That *path* is a whole, sound pydfs metadata copy this pydfs can open, or
    ``InvalidArgument`` saying why not. Opened read-only, as immutable: nothing is written
    beside it."""
    if not path.is_file():
        raise InvalidArgument(f"no backup file {path}")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error as exc:
        raise InvalidArgument(f"cannot open {path}: {exc}") from None
    try:
        if problem := _integrity(db):
            raise InvalidArgument(f"{path} is damaged (SQLite's integrity check: {problem})")
        (schema,) = db.execute("PRAGMA user_version").fetchone()
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        if schema < 1 or not {"inodes", "blocks", "file_blocks"} <= tables:
            raise InvalidArgument(f"{path} is not a pydfs metadata backup")
        try:
            migrations.pending(__package__, schema)
        except InternalError:
            raise InvalidArgument(
                f"{path} has metadata schema version {schema}, newer than this pydfs knows: "
                "restore it with the pydfs that made it"
            ) from None
        taken = None
        if "provenance" in tables:
            row = db.execute("SELECT taken FROM provenance").fetchone()
            taken = row[0] if row else None
        (files,) = db.execute("SELECT count(*) FROM inodes WHERE type = 'f'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise InvalidArgument(f"{path} is not a pydfs metadata backup: {exc}") from None
    finally:
        db.close()
    return Checked(int(schema), taken, int(files))


def install(backup: Path, database: Path) -> tuple[Checked, Path | None]:
    """Put the copy *backup* in place of *database* (whose name node is stopped), marked as
    restored, without the upload leases and delete orders it was taken with: the name node
    judges every replica afresh from its data nodes' first reports. The database it replaces, with
    its ``-wal`` and ``-shm``, is kept beside it under a new name, which is returned (None if
    there was none); nothing is deleted."""
    from pydfs.namenode.store.sqlite import Store

    checked = check(backup)
    staged = database.with_name(database.name + ".restoring")
    with contextlib.suppress(FileNotFoundError):
        staged.unlink()  # left by a restore that was interrupted: a copy of a backup
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{staged}{suffix}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(backup, "rb") as src, open(fd, "wb") as dst:
        shutil.copyfileobj(src, dst, CHUNK)
    store = Store(staged)  # brings the copy's schema up to date
    try:
        with store.transaction() as db:
            db.execute(
                "INSERT INTO provenance (one, taken, restored) VALUES (1, ?, ?) "
                "ON CONFLICT (one) DO UPDATE SET restored = excluded.restored",
                (checked.taken, time.time()),
            )
            for table in ("upload_blocks", "uploads", "trash", "orphans"):
                db.execute(f"DELETE FROM {table}")
            # Every replica it counts is from before: the first block reports must confirm
            # each, however recently it was counted (a report spares replicas counted after
            # its listing began).
            db.execute("UPDATE replicas SET added = 0")
        store.db.execute("PRAGMA journal_mode=DELETE")  # one file again, made durable
    finally:
        store.close()
    _fsync(staged)
    aside = _set_aside(database) if database.exists() else None
    os.replace(staged, database)
    _fsync(database.parent)
    return checked, aside


def _set_aside(database: Path) -> Path:
    """Give *database* (and its ``-wal``, ``-shm``) a new name beside it; its own name stays
    linked to it until the restored copy takes that name, so that there is always one."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = database.with_name(f"{database.name}.before-restore-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = database.with_name(f"{database.name}.before-restore-{stamp}-{n}")
    try:
        os.link(database, aside)
    except OSError:
        shutil.copy2(database, aside)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.rename(f"{database}{suffix}", f"{aside}{suffix}")
    return aside


def _integrity(db: sqlite3.Connection) -> str | None:
    rows = db.execute("PRAGMA integrity_check").fetchall()
    return None if rows == [("ok",)] else "; ".join(str(r[0]) for r in rows[:3])


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
