"""``pydfs mount`` when a file changes under an open handle: replaced, moved or removed
elsewhere, appended to from two mounts, replaced through this mount under a reader. A handle
reads the version it opened or fails; an open after a change reads the new version; a writer's
close fails rather than drop or misplace its writes; an open is checked as its writes would be."""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pydfs.cluster import LocalCluster
from tests.conftest import Cli
from tests.integration.test_mount import mounted

TTL = 0.3  # the mounts' attribute and entry cache, short to keep the tests short
MiB = 1 << 20


@pytest.fixture(scope="module")
def mnt(shared_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    where = tmp_path_factory.mktemp("a") / "m"
    # No read-ahead: a reader's next bytes are fetched when read, not before.
    with mounted(shared_cluster, where, "--ttl", str(TTL), "--read-ahead", "0") as m:
        yield m


@pytest.fixture(scope="module")
def bob(shared_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A second mount, as the user bob."""
    with shared_cluster.client() as fs:
        token = fs.add_user("bob")
    where = tmp_path_factory.mktemp("b") / "m"
    with mounted(shared_cluster, where, "--ttl", str(TTL), token=token) as m:
        yield m


@pytest.fixture
def work(mnt: Path, request: pytest.FixtureRequest) -> Path:
    d = mnt / "tmp" / request.node.name
    d.mkdir(mode=0o777)
    os.chmod(d, 0o777)  # bob may write here too
    return d


def dfs(local: Path, mnt: Path) -> str:
    return "/" + str(local.relative_to(mnt))


def test_a_replaced_file_reads_as_opened_or_fails(
    work: Path, mnt: Path, shared_cluster: LocalCluster
) -> None:
    """Replaced by a smaller or a larger file elsewhere: the open handle reads the whole version
    it opened, or fails once its blocks are gone (as they are by the time the reader goes on,
    unless the data nodes are slow to delete them); never a short file, never the new size."""
    old = os.urandom(6 * MiB)
    f = work / "f"
    for new_size in (1 * MiB, 9 * MiB):
        f.write_bytes(old)
        with open(f, "rb", buffering=0) as reader:
            got = bytearray(reader.read(MiB))
            with shared_cluster.client() as fs:
                fs.write_bytes(dfs(f, mnt), os.urandom(new_size))
            time.sleep(1.5)  # past the TTL (the kernel asks again), and the blocks' deletion
            assert f.stat().st_size == new_size  # a new open sees the new version
            try:
                while chunk := reader.read(MiB):
                    got += chunk
            except OSError as exc:
                assert exc.errno in (errno.EIO, errno.ESTALE), exc
                assert old.startswith(got)
            else:
                assert got == old
            assert os.fstat(reader.fileno()).st_size == len(old)
        assert len(f.read_bytes()) == new_size


def _mapped(path: Path) -> bytes:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        return m[:]


@pytest.mark.parametrize("old_reads", ["after the new open", "before the new open", "all along"])
def test_a_file_opened_after_the_mount_replaced_it_reads_the_new_version_with_an_old_reader_open(
    work: Path, old_reads: str
) -> None:
    """The kernel keeps one page cache per inode number, shared by its handles. A reader open
    on the version before this mount's own commit reads on, and its pages must not reach a
    reader opened after the commit (close-to-open), nor any later open, by read or mmap."""
    f = work / "f"
    v1, v2 = os.urandom(300 * 1024 + 100), os.urandom(300 * 1024 + 100)  # a part page at the end
    f.write_bytes(v1)
    with open(f, "rb", buffering=0) as old:
        if old_reads == "all along":
            assert os.pread(old.fileno(), len(v1), 0) == v1
        with open(f, "r+b", buffering=0) as writer:
            writer.write(v2)
        # What the old reader reads from now on is not checked: what matters here is whose
        # page cache its reads fill.
        if old_reads != "after the new open":
            os.pread(old.fileno(), len(v1), 0)
        with open(f, "rb", buffering=0) as new:
            if old_reads != "before the new open":
                os.pread(old.fileno(), len(v1), 0)
            assert new.read() == v2
            assert f.read_bytes() == v2  # a third open, the old reader still open
            assert _mapped(f) == v2
        os.pread(old.fileno(), len(v1), 0)
    time.sleep(TTL * 2)
    assert f.read_bytes() == _mapped(f) == v2


def test_a_writer_left_on_the_old_number_still_writes_the_file(work: Path) -> None:
    """A writer's fsync, an old reader open: the file takes a new number and the writer stays
    on the old one (its inode), but its later writes, its size and a rename follow the file."""
    f, moved = work / "f", work / "g"
    v1, v2 = os.urandom(100 * 1024), os.urandom(100 * 1024)
    f.write_bytes(v1)
    with open(f, "rb", buffering=0) as old:
        assert old.read(10) == v1[:10]
        with open(f, "r+b", buffering=0) as writer:
            writer.write(v2)
            os.fsync(writer.fileno())
            assert f.read_bytes() == v2
            writer.write(b"tail")
            assert os.fstat(writer.fileno()).st_size == len(v2) + 4
            f.rename(moved)
        assert moved.read_bytes() == _mapped(moved) == v2 + b"tail"
        assert not f.exists()


def test_a_change_of_mode_under_an_old_reader_keeps_the_files_number(work: Path) -> None:
    """Only new content takes a new number: the writer's chmods after its fsync do not."""
    f = work / "f"
    f.write_bytes(b"x" * 1000)
    with open(f, "rb", buffering=0) as old:
        assert old.read(10) == b"x" * 10
        with open(f, "r+b", buffering=0) as writer:
            writer.write(b"y")
            os.fsync(writer.fileno())
            time.sleep(TTL * 2)
            number = os.stat(f).st_ino
            os.fchmod(writer.fileno(), 0o600)
            os.fchmod(writer.fileno(), 0o644)
            time.sleep(TTL * 2)
            assert os.stat(f).st_ino == number
    assert f.read_bytes() == b"y" + b"x" * 999


@pytest.mark.parametrize("stat", ["by path", "its own fstat"])
def test_a_writer_that_went_back_after_streaming_keeps_its_writes_past_the_ttl(
    work: Path, stat: str
) -> None:
    """Going back over a file written front to back publishes what was streamed, as its base
    (a header patched at the end, as zipfile and WAV writers do). The mount must know that
    version as its own: a stat after the TTL once took it for a change made elsewhere, and
    the writer's close failed (ESTALE), its later writes lost."""
    f = work / "f"
    data = os.urandom(3 << 20)
    fd = os.open(f, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.pwrite(fd, b"HEAD", 0)
        time.sleep(TTL * 3)
        os.stat(f) if stat == "by path" else os.fstat(fd)
        os.write(fd, b"tail")
    finally:
        os.close(fd)
    assert f.read_bytes() == b"HEAD" + data[4:] + b"tail"


@pytest.mark.parametrize("how", ["by path", "by its writer"])
def test_a_truncate_to_the_files_own_size_keeps_its_content(work: Path, how: str) -> None:
    """A size that does not change is no change: it once committed the file empty."""
    f = work / "f"
    f.write_bytes(b"abc" * 1000)
    if how == "by path":
        os.truncate(f, 3000)
    else:
        with open(f, "r+b", buffering=0) as writer:
            os.ftruncate(writer.fileno(), 3000)
    assert f.read_bytes() == b"abc" * 1000


def test_a_file_replaced_elsewhere_reads_the_new_version_with_an_old_reader_open(
    work: Path, mnt: Path, shared_cluster: LocalCluster
) -> None:
    """As above, the new version made by another client: the mount gives it a new number
    when it learns of it, so the old reader's pages stay with the old one."""
    f = work / "f"
    v1, v2 = os.urandom(300 * 1024), os.urandom(200 * 1024)
    f.write_bytes(v1)
    with open(f, "rb", buffering=0) as old:
        assert os.pread(old.fileno(), len(v1), 0) == v1
        with shared_cluster.client() as fs:
            fs.write_bytes(dfs(f, mnt), v2)
        time.sleep(TTL * 2)
        with open(f, "rb", buffering=0) as new:
            with contextlib.suppress(OSError):  # its blocks may be gone already
                os.pread(old.fileno(), len(v1), 0)
            assert new.read() == v2
            assert f.read_bytes() == _mapped(f) == v2
    assert f.read_bytes() == v2


def _opened(path: Path, flags: int) -> bool:
    try:
        fd = os.open(path, flags, 0o644)
    except PermissionError:
        return False
    with contextlib.suppress(OSError):
        os.close(fd)
    return True


def test_opening_to_truncate_or_create_needs_write_permission(
    work: Path, mnt: Path, bob: Path, shared_cluster: LocalCluster
) -> None:
    pin = work / "pin"
    pin.write_bytes(b"admin's")
    pin.chmod(0o600)
    as_bob = bob / dfs(pin, mnt).lstrip("/")
    assert not _opened(as_bob, os.O_WRONLY | os.O_TRUNC)
    # create() of a name bob's mount knows as missing, made meanwhile by another client
    late = as_bob.with_name("late")
    assert not late.exists()
    with shared_cluster.client() as fs:
        fs.write_bytes(dfs(work / "late", mnt), b"admin's")
        fs.chmod(dfs(work / "late", mnt), 0o600)
    assert not _opened(late, os.O_WRONLY | os.O_CREAT)
    assert pin.read_bytes() == (work / "late").read_bytes() == b"admin's"


def test_a_writer_whose_file_went_elsewhere_fails_at_close(
    work: Path, mnt: Path, shared_cluster: LocalCluster
) -> None:
    """Moved or removed by another client while open: the close fails, and nothing of the
    writes lands anywhere (not at the old name, not at the new)."""
    for how in ("moved, then looked up", "moved", "removed"):
        f = work / how.replace(",", "").replace(" ", "-")
        out = open(f, "wb")  # noqa: SIM115 - closed below, where it must fail
        out.write(os.urandom(3 * MiB))  # more than is kept in memory: it streams
        with shared_cluster.client() as fs:
            if how.startswith("moved"):
                fs.move(dfs(f, mnt), dfs(f, mnt) + ".moved")
            else:
                fs.delete(dfs(f, mnt))
        if how.endswith("looked up"):
            time.sleep(TTL * 2)
            assert not f.exists()
        with pytest.raises(OSError) as exc:
            out.close()
        assert exc.value.errno in (errno.ESTALE, errno.EIO)
        with shared_cluster.client() as fs:
            assert not fs.exists(dfs(f, mnt))
            if how.startswith("moved"):
                assert fs.read_bytes(dfs(f, mnt) + ".moved") == b""


def test_appends_from_two_mounts(
    work: Path, mnt: Path, bob: Path, shared_cluster: LocalCluster
) -> None:
    """An append opened within the TTL of another mount's change appends to that change; two
    writers open at once: the second close fails, and the first one's content stands."""
    log = work / "log"
    log.write_bytes(b"b1\n")
    log.chmod(0o666)
    as_bob = bob / dfs(log, mnt).lstrip("/")
    assert as_bob.stat().st_size == 3  # bob's kernel now caches the size
    with open(log, "ab") as a:
        a.write(b"a1\n")
    with open(as_bob, "ab") as b:  # within the TTL
        b.write(b"b2\n")
    with shared_cluster.client() as fs:
        assert fs.read_bytes(dfs(log, mnt)) == b"b1\na1\nb2\n"

    a = open(log, "ab")  # noqa: SIM115
    b = open(as_bob, "ab")  # noqa: SIM115
    a.write(b"a2\n")
    b.write(b"b3\n")
    a.close()
    with pytest.raises(OSError) as exc:
        b.close()
    assert exc.value.errno in (errno.ESTALE, errno.EIO)
    with shared_cluster.client() as fs:
        assert fs.read_bytes(dfs(log, mnt)) == b"b1\na1\nb2\na2\n"


def test_mounting_on_a_mount_point_is_refused(
    mnt: Path, shared_cluster: LocalCluster, tmp_path: Path
) -> None:
    cli = Cli(shared_cluster.url, tmp_path, shared_cluster.admin_token)
    assert "already a mount point" in cli.fails("mount", str(mnt), "--log", str(tmp_path / "l"))
    bogus = Cli(shared_cluster.url, tmp_path, "bogus")
    assert "already a mount point" in bogus.fails("mount", str(mnt))
    (tmp_path / "fresh").mkdir()
    assert "token" in bogus.fails("mount", str(tmp_path / "fresh"), "--log", str(tmp_path / "l"))
    assert not os.path.ismount(tmp_path / "fresh")


def test_dot_entries_and_chown_to_the_mounting_user(
    work: Path, mnt: Path, bob: Path, shared_cluster: LocalCluster
) -> None:
    (work / "f").write_bytes(b"f")
    listing = subprocess.run(["ls", "-a", str(work)], capture_output=True, text=True, check=True)
    assert listing.stdout.split() == [".", "..", "f"]
    with shared_cluster.client() as fs:
        fs.chown(dfs(work / "f", mnt), "bob")
    time.sleep(TTL * 2)
    assert (work / "f").stat().st_uid != os.getuid()
    os.chown(work / "f", os.getuid(), -1)  # the mounting user: the mount's pydfs user
    with shared_cluster.client() as fs:
        assert fs.info(dfs(work / "f", mnt)).owner == fs.whoami().name
    assert (work / "f").stat().st_uid == os.getuid()
