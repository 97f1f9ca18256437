"""What the metadata store leaves on disk: private files, and names in NFC."""

import os
import sqlite3
import stat
import unicodedata
from pathlib import Path

import pytest

from pydfs.namenode.store import migrations
from pydfs.namenode.store import sqlite as sqlite_store
from pydfs.namenode.store.sqlite import Store


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_database_and_its_log_are_private(tmp_path: Path) -> None:
    path = tmp_path / "ns.sqlite3"
    store = Store(path)
    with store.transaction() as db:
        db.execute("INSERT INTO datanodes (id, url) VALUES ('dn', 'http://x')")
    for suffix in ("", "-wal", "-shm"):
        assert _mode(Path(f"{path}{suffix}")) == 0o600, suffix
    store.close()
    for suffix in ("", "-wal", "-shm"):  # a database from before: tightened at open
        if Path(f"{path}{suffix}").exists():
            os.chmod(f"{path}{suffix}", 0o644)
    store = Store(path)
    for suffix in ("", "-wal", "-shm"):
        assert _mode(Path(f"{path}{suffix}")) == 0o600, suffix
    store.close()


def test_names_stored_before_are_migrated_to_nfc(tmp_path: Path) -> None:
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    angstrom, a_ring = "\u212b", "A\u030a"  # two spellings whose NFC is "\u00c5"
    store = Store(tmp_path / "ns.sqlite3")
    with store.transaction() as db:
        rows = [(10, nfc), (11, nfd), (13, "nai\u0308ve"), (14, angstrom), (15, a_ring)]
        rows += [(16, "plain")]
        db.executemany(
            "INSERT INTO inodes (id, parent, name, type, mtime, ctime, owner) "
            "VALUES (?, 1, ?, 'd', 0, 0, 'alice')",
            rows,
        )
        # What later migrations made:
        db.execute("ALTER TABLE replicas DROP COLUMN added")
        for table in (
            *("census", "uploads", "upload_blocks", "leader", "provenance", "orphans"),
            "applied",
        ):
            db.execute(f"DROP TABLE main.{table}")  # not the census of this connection
        db.execute("ALTER TABLE inodes DROP COLUMN sha256")
        db.execute("PRAGMA user_version=3")  # as a name node before NFC left it
    store.close()
    store = Store(tmp_path / "ns.sqlite3")
    names = dict(store.db.execute("SELECT id, name FROM inodes WHERE parent = 1"))
    store.close()
    assert names[10] == nfc and names[11] == f"{nfc} (11)"  # both stay reachable
    assert names[13] == "na\u00efve" and names[16] == "plain"
    assert names[14].startswith("\u00c5") and names[15].startswith("\u00c5")
    assert all(unicodedata.is_normalized("NFC", n) for n in names.values())
    assert len(set(names.values())) == len(names)


def test_a_store_from_before_links_is_rebuilt_with_its_rows_and_census(tmp_path: Path) -> None:
    """Migration 0008 rebuilds ``inodes`` (a new CHECK): rows, unique names, census triggers."""
    path = tmp_path / "ns.sqlite3"
    db = sqlite3.connect(path)
    db.create_function("nfc", 1, lambda s: unicodedata.normalize("NFC", s))
    for version, sql in migrations.pending("pydfs.namenode.store.sqlite", 0):
        if version <= 7:
            for statement in sqlite_store._statements(sql):
                db.execute(statement)
    db.execute(
        "INSERT INTO inodes (id, parent, name, type, mtime, ctime, owner, mode, sha256) "
        "VALUES (1, 0, '', 'd', 0, 0, 'root', 493, NULL), (2, 1, 'f', 'f', 5, 6, 'alice', 420, "
        "'ab')"
    )
    db.execute("PRAGMA user_version=7")
    db.commit()
    db.close()
    store = Store(path)
    try:
        rows = store.db.execute("SELECT id, name, type, mtime, mode, sha256, target FROM inodes")
        assert sorted(rows) == [(1, "", "d", 0, 493, None, None), (2, "f", "f", 5, 420, "ab", None)]
        with store.transaction() as tx:
            tx.execute(
                "INSERT INTO inodes (parent, name, type, mtime, ctime, owner, target) "
                "VALUES (1, 'l', 'l', 0, 0, 'alice', 'f')"
            )
            with pytest.raises(sqlite3.IntegrityError):  # names stay unique
                tx.execute(
                    "INSERT INTO inodes (parent, name, type, mtime, ctime, owner) "
                    "VALUES (1, 'f', 'f', 0, 0, 'alice')"
                )
            tx.execute("DELETE FROM inodes WHERE id = 2")
        assert dict(store.db.execute("SELECT kind, n FROM census")) == {
            "f": 0,
            "d": 1,
            "b": 0,
            "l": 1,
        }
    finally:
        store.close()


def _add(store: Store, *rows: tuple[int, str]) -> None:
    with store.transaction() as db:
        db.executemany(
            "INSERT INTO inodes (id, parent, name, type, mtime, ctime, owner) "
            "VALUES (?, 1, ?, 'f', 0, 0, 'alice')",
            rows,
        )


def _census(store: Store) -> dict[str, int]:
    return dict(store.db.execute("SELECT kind, n FROM census"))


def test_a_commit_writes_no_census_to_the_database(tmp_path: Path) -> None:
    """The census is kept off the log (a page fewer per commit) and stored as the store
    closes: what another connection reads of it does not change with each commit."""
    path = tmp_path / "ns.sqlite3"
    store = Store(path)
    other = sqlite3.connect(path)
    try:
        stored = dict(other.execute("SELECT kind, n FROM census"))
        _add(store, (10, "a"), (11, "b"))
        assert dict(other.execute("SELECT kind, n FROM census")) == stored
        assert _census(store)["f"] == stored["f"] + 2
        store.close()
        assert dict(other.execute("SELECT kind, n FROM census")) == {
            **stored,
            "f": stored["f"] + 2,
            "open": 0,
        }
    finally:
        other.close()


def test_the_census_is_kept_across_a_close_and_counted_again_after_a_crash(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ns.sqlite3"
    store = Store(path)
    _add(store, (10, "a"), (11, "b"))
    with store.transaction() as db:
        db.execute("DELETE FROM inodes WHERE id = 10")
        with pytest.raises(sqlite3.IntegrityError):  # a statement undone: its count too
            db.execute(
                "INSERT INTO inodes (id, parent, name, type, mtime, ctime, owner) "
                "VALUES (12, 1, 'c', 'f', 0, 0, 'a'), (13, 1, 'b', 'f', 0, 0, 'a')"
            )
    counted = _census(store)
    assert counted["f"] == 1
    store.close()
    store = Store(path)
    assert _census(store) == counted  # as stored at the close
    _add(store, (14, "d"))
    store.db.close()  # a crash: the census of this run is never stored
    store = Store(path)
    try:
        assert _census(store) == {**counted, "f": 2}  # counted again
    finally:
        store.close()


def test_the_census_is_counted_again_after_a_migration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration that adds or removes rows runs before the census's triggers exist: the
    counts stored at the last close are stale then, and counted again."""
    path = tmp_path / "ns.sqlite3"
    store = Store(path)
    _add(store, (10, "a"))
    counted = _census(store)
    (version,) = store.db.execute("PRAGMA user_version").fetchone()
    store.close()
    made = (
        "INSERT INTO inodes (id, parent, name, type, mtime, ctime, owner) "
        "VALUES (11, 1, 'made-by-a-migration', 'f', 0, 0, 'a');"
    )
    monkeypatch.setattr(
        sqlite_store.migrations,
        "pending",
        lambda package, current: [(version + 1, made)] if current == version else [],
    )
    store = Store(path)
    try:
        assert _census(store) == {**counted, "f": counted["f"] + 1}
    finally:
        store.close()
