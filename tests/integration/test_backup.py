"""Metadata backups and restores with real processes: `pydfs admin backup` while a client writes,
`pydfs namenode restore` with the name node stopped, and what becomes of the blocks written or
deleted after the backup (fsck shows both; nothing is deleted until `fsck --delete-orphans`)."""

from __future__ import annotations

import http.server
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pydfs import Client, wire
from pydfs.cluster import LocalCluster
from pydfs.errors import InvalidArgument
from pydfs.namenode.backups import disk_error
from pydfs.namenode.store.sqlite import backup
from tests.conftest import BLOCK_SIZE, Cli, block_files

pytestmark = pytest.mark.sqlite_only(
    "backs up and restores the SQLite metadata (PostgreSQL's store has its own tools)"
)


def _write(fs: Client, path: str, data: bytes, sizes: dict[str, int]) -> list[str]:
    status = fs.write_bytes(path, data)
    for b in status.blocks or []:
        sizes[b.id] = b.size
    return [b.id for b in status.blocks or []]


def _fsck(cli: Cli) -> dict:
    r = cli("--json", "fsck")
    assert r.code in (0, 1), r.err
    return json.loads(r.out)


def _named_blocks(fs: Client) -> set[str]:
    named = set()
    for top, _, names in fs.walk("/"):
        for name in names:
            named |= {b.id for b in fs.info(f"{top.rstrip('/')}/{name}").blocks or []}
    return named


def test_restore_keeps_what_was_written_after_the_backup_until_the_admin_says(
    cluster_factory: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    cluster = cluster_factory()
    cli = Cli(cluster.url, tmp_path, cluster.admin_token)
    sizes: dict[str, int] = {}
    before = {f"/before/f{i}": os.urandom(BLOCK_SIZE * i + 777) for i in range(4)}
    with cluster.client() as fs:
        fs.mkdir("/before", parents=True)
        fs.mkdir("/during", parents=True)
        for path, data in before.items():
            _write(fs, path, data, sizes)

        written: dict[str, bytes] = {}
        stop = threading.Event()

        def writer() -> None:
            with cluster.client() as mine:
                n = 0
                while not stop.is_set():
                    data = os.urandom(5000 + n)
                    _write(mine, f"/during/w{n}", data, sizes)
                    written[f"/during/w{n}"] = data
                    n += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            while len(written) < 3:
                time.sleep(0.01)
            dest = tmp_path / "meta.sqlite3"
            out = cli("admin", "backup", str(dest)).ok().out
            assert str(dest) in out and "sha256" in out
            while len(written) < 6:  # the writer went on after the copy, too
                time.sleep(0.01)
        finally:
            stop.set()
            thread.join()
        assert oct(dest.stat().st_mode & 0o777) == "0o600"
        assert backup.check(dest).files >= len(before)

        # After the backup: new files, a replaced one, deleted ones.
        deleted = ["/before/f2", "/before/f3"]
        gone = {b.id for p in [*deleted, "/before/f1"] for b in fs.info(p).blocks or []}
        after_blocks: list[str] = []
        fs.mkdir("/after")
        for i in range(3):
            after_blocks += _write(fs, f"/after/a{i}", os.urandom(BLOCK_SIZE + i), sizes)
        after_blocks += _write(fs, "/before/f1", b"replaced after the backup", sizes)
        for path in deleted:
            fs.delete(path)
        cluster.wait_until(lambda: not gone & block_files(cluster), 20, "deletes carried out")

    # A running name node is never restored over; a damaged backup never installed.
    nn_dir = cluster.namenode.data_dir
    err = cli.fails("namenode", "restore", str(dest), "--data-dir", str(nn_dir))
    assert "a name node is running" in err and "stop it first" in err
    cluster.namenode.stop()
    metadata = nn_dir / "namespace.sqlite3"
    current = metadata.read_bytes()
    damaged = tmp_path / "damaged.sqlite3"
    damaged.write_bytes(dest.read_bytes()[: dest.stat().st_size // 2])
    err = cli.fails("namenode", "restore", str(damaged), "--data-dir", str(nn_dir))
    assert str(damaged) in err
    assert metadata.read_bytes() == current

    out = cli("namenode", "restore", str(dest), "--data-dir", str(nn_dir)).ok().out
    kept = list(nn_dir.glob("namespace.sqlite3.before-restore-*"))
    assert len([k for k in kept if not k.name.endswith(("-wal", "-shm"))]) == 1
    assert "kept in" in out and "fsck --delete-orphans" in out
    cluster.restart_namenode()
    cluster.wait_for_live(2)

    with cluster.client() as fs:
        assert fs.read_bytes("/before/f0") == before["/before/f0"]
        for entry in fs.ls("/during"):
            assert (
                fs.read_bytes(entry.path) == written[entry.path]
            )  # whatever the copy caught, whole
        assert not fs.exists("/after")
        disk = block_files(cluster)
        assert set(after_blocks) <= disk  # the only copies of the new data: still there
        orphans = disk - _named_blocks(fs)
        assert set(after_blocks) <= orphans

        def measured() -> bool:
            kept = _fsck(cli)["restore"]
            return kept["blocks"] == len(orphans) and kept["unmeasured"] == 0

        cluster.wait_until(measured, 20, "every kept block listed and measured")
        report = _fsck(cli)
        assert report["status"] == "MISSING BLOCKS"
        # deleted, or replaced (f1: its blocks at the backup went with the replacement)
        assert report["missing_paths"] == ["/before/f1", *deleted]
        assert report["missing_files"] == 3
        assert report["restore"]["bytes"] == sum(sizes[b] for b in orphans)
        human = cli("fsck")
        assert human.code == 1
        assert "written (or replaced) after the backup" in human.out
        assert "--delete-orphans" in human.out
        assert "/before/f2" in human.out
        assert orphans <= block_files(cluster)  # block reports came: nothing was deleted

        # Nothing goes without a yes; then the kept blocks go, and only they.
        assert "--yes" in cli.fails("fsck", "--delete-orphans")
        done = cli("fsck", "--delete-orphans", "--yes").ok().out
        assert f"{len(orphans)} blocks" in done
        cluster.wait_until(
            lambda: not orphans & block_files(cluster), 30, "kept blocks deleted once let go"
        )
        assert fs.read_bytes("/before/f0") == before["/before/f0"]
        assert "restore" not in _fsck(cli) or _fsck(cli)["restore"] is None
        assert "no restore awaits" in cli.fails("fsck", "--delete-orphans", "--yes")


def test_backup_refusals_are_one_line_and_touch_nothing(
    shared_cluster: LocalCluster, tmp_path: Path
) -> None:
    cli = Cli(shared_cluster.url, tmp_path, shared_cluster.admin_token)
    err = cli.fails("admin", "backup", str(tmp_path / "no" / "such" / "dir" / "x.sqlite3"))
    assert "no directory" in err
    assert not (tmp_path / "no").exists()

    with shared_cluster.client() as fs:
        token = fs.add_user("backupless")
    plain = Cli(shared_cluster.url, tmp_path, token)
    r = plain("admin", "backup", str(tmp_path / "mine.sqlite3"))
    assert r.code == 5 and "admin" in r.err and len(r.err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*mine*"))

    (tmp_path / "there.sqlite3").write_bytes(b"keep me")
    assert "-f" in cli.fails("admin", "backup", str(tmp_path / "there.sqlite3"))
    assert (tmp_path / "there.sqlite3").read_bytes() == b"keep me"
    cli("admin", "backup", "-f", str(tmp_path / "there.sqlite3")).ok()
    assert backup.check(tmp_path / "there.sqlite3").schema > 0

    piped = cli("admin", "backup", "-").ok()  # to stdout: the file itself, nothing else
    (tmp_path / "piped.sqlite3").write_bytes(piped.raw)
    assert backup.check(tmp_path / "piped.sqlite3").files >= 0
    assert not list(tmp_path.glob(".*partial"))
    assert not list(shared_cluster.namenode.data_dir.glob(".backup-*"))  # nothing left there

    nn_dir = shared_cluster.namenode.data_dir
    assert "no backup file" in cli.fails("namenode", "restore", "nope", "--data-dir", str(nn_dir))
    junk = tmp_path / "junk"
    junk.write_bytes(b"SQLite format 3\x00" + b"\x00" * 500)
    assert "stop it first" in cli.fails("namenode", "restore", str(junk), "--data-dir", str(nn_dir))


def test_scheduled_backups_keep_the_newest(
    cluster_factory: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    kept = tmp_path / "kept"
    cluster = cluster_factory(
        1,
        namenode_args=["--backup-every", "0.3", "--backup-dir", str(kept), "--backup-keep", "2"],
    )
    with cluster.client() as fs:
        fs.write_bytes("/x", b"x")
    cluster.wait_until(lambda: len(list(kept.glob("pydfs-metadata-*"))) == 2, 20, "2 backups")
    time.sleep(1.2)  # several more rounds

    def between_rounds() -> bool:
        """The newest two only, and no copy under way left behind: true between two rounds
        (one may be under way at any moment, every 0.3 s); a leak or a missed prune never is."""
        copies = sorted(kept.glob("pydfs-metadata-*.sqlite3"))
        if len(copies) != 2 or list(kept.glob(".backup-*")):
            return False
        try:
            return all(backup.check(c).files == 1 for c in copies)
        except (FileNotFoundError, InvalidArgument):  # pruned as we looked (a bad copy stays)
            return False

    cluster.wait_until(between_rounds, 20, "two backups and no leftover between rounds")


def test_a_backup_the_name_node_disk_refuses_is_one_line(tmp_path: Path) -> None:
    """What the name node answers when its disk is full (``backups.disk_error``), as the CLI
    tells it: one line, non-zero exit, no file left."""
    refused = disk_error(
        tmp_path / ".backup-1", sqlite3.OperationalError("database or disk is full")
    )
    body = wire.encode(wire.ErrorBody(refused.code, str(refused)))

    class Full(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(refused.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Full) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        cli = Cli(f"http://127.0.0.1:{server.server_address[1]}", tmp_path, "pydfs_token")
        err = cli.fails("admin", "backup", str(tmp_path / "x.sqlite3"))
        server.shutdown()
    assert "disk is full" in err and str(tmp_path) in err
    assert not list(tmp_path.glob("*x.sqlite3*"))
