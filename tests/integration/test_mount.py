"""``pydfs mount``: POSIX operations through a real FUSE mount of a real cluster, and the
programs people run on a file system (cp -a, rsync -a, tar, git, an editor's save).

The mount needs FUSE (``/dev/fuse``, ``fusermount3``) and pyfuse3 (``pydfs[mount]``); without
them these tests are skipped, except in CI, where they must run."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pydfs.cluster import LocalCluster
from tests.conftest import BLOCK_SIZE, Cli


def _fuse_missing() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if shutil.which("fusermount3") is None:
        return "no fusermount3 (apt-get install fuse3)"
    try:
        import pyfuse3  # noqa: F401
    except ImportError:
        return "no pyfuse3 (pip install 'pydfs[mount]')"
    return None


def require_fuse() -> None:
    missing = _fuse_missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"FUSE must be available in CI: {missing}")
        pytest.skip(f"FUSE unavailable: {missing}")


@contextmanager
def mounted(
    cluster: LocalCluster, where: Path, *args: str, token: str | None = None
) -> Iterator[Path]:
    """*cluster* mounted on *where* (made if missing) in the foreground, as *token*'s user."""
    require_fuse()
    where.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDFS_")}
    env.update(
        PYDFS_NAMENODE=cluster.url,
        PYDFS_TOKEN=token or cluster.admin_token,
        PYDFS_CONFIG=str(where.parent / f"{where.name}.toml"),
    )
    log = where.parent / f"{where.name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pydfs", "mount", *args, str(where), "--foreground"],
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(where):
            assert proc.poll() is None, f"mount exited: {log.read_text()}"
            assert time.monotonic() < deadline, f"not mounted: {log.read_text()}"
            time.sleep(0.05)
        yield where
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(where)], capture_output=True)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert "Traceback" not in log.read_text(), log.read_text()
        print(log.read_text())  # shown when a test fails


@pytest.fixture(scope="module")
def mnt(shared_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with mounted(shared_cluster, tmp_path_factory.mktemp("mnt") / "m") as where:
        yield where


@pytest.fixture
def work(mnt: Path, request: pytest.FixtureRequest) -> Path:
    """A fresh directory of the mount for one test."""
    d = mnt / "tmp" / request.node.name
    d.mkdir()
    return d


def test_files_directories_and_attributes(work: Path, shared_cluster: LocalCluster) -> None:
    f = work / "a.txt"
    f.write_bytes(b"hello")
    assert f.read_bytes() == b"hello"
    (work / "d").mkdir()
    f.rename(work / "d" / "b.txt")
    assert not f.exists()
    assert sorted(os.listdir(work)) == ["d"]
    moved = work / "d" / "b.txt"
    st = moved.stat()
    assert stat.S_ISREG(st.st_mode) and st.st_size == 5 and st.st_mode & 0o777 == 0o644
    assert st.st_uid == os.getuid()  # the mount's own user is the local user
    assert stat.S_ISDIR((work / "d").stat().st_mode)

    # The cluster sees what the mount wrote, at once.
    with shared_cluster.client() as fs:
        assert fs.read_bytes(f"/tmp/{work.name}/d/b.txt") == b"hello"

    with open(moved, "ab") as out:  # append
        out.write(b" world")
    assert moved.read_bytes() == b"hello world"
    os.truncate(moved, 4)
    assert moved.read_bytes() == b"hell"
    os.truncate(moved, 6)  # extending reads zeros
    assert moved.read_bytes() == b"hell\0\0"
    moved.chmod(0o600)
    assert moved.stat().st_mode & 0o777 == 0o600
    os.utime(moved, (1_000_000_000, 1_000_000_000))
    assert moved.stat().st_mtime == 1_000_000_000

    out = subprocess.run(["ls", "-l", str(work / "d")], capture_output=True, text=True, check=True)
    assert "-rw------- 1" in out.stdout and "b.txt" in out.stdout
    df = os.statvfs(work)
    assert df.f_blocks > 0 and 0 < df.f_bavail <= df.f_blocks

    with pytest.raises(OSError) as exc:
        (work / "d").rmdir()
    assert exc.value.errno == errno.ENOTEMPTY
    moved.unlink()
    (work / "d").rmdir()
    assert os.listdir(work) == []


def test_rename_is_rename2(work: Path) -> None:
    """rename(2), not mv: over a file it replaces, over an empty directory too, and a file
    never lands inside a directory of the target's name."""
    (work / "a").write_bytes(b"a")
    (work / "b").write_bytes(b"b")
    os.rename(work / "a", work / "b")
    assert (work / "b").read_bytes() == b"a" and not (work / "a").exists()
    (work / "d1").mkdir()
    (work / "d2").mkdir()
    (work / "d1" / "x").write_bytes(b"x")
    os.rename(work / "d1", work / "d2")
    assert (work / "d2" / "x").read_bytes() == b"x" and not (work / "d1").exists()
    with pytest.raises(IsADirectoryError):
        os.rename(work / "b", work / "d2")
    (work / "d3").mkdir()
    (work / "d3" / "y").write_bytes(b"y")
    with pytest.raises(OSError) as exc:
        os.rename(work / "d2", work / "d3")
    assert exc.value.errno == errno.ENOTEMPTY
    assert sorted(os.listdir(work)) == ["b", "d2", "d3"]


def test_hard_links_and_special_files_are_refused(work: Path) -> None:
    (work / "f").write_bytes(b"f")
    with pytest.raises(PermissionError):
        os.link(work / "f", work / "g")
    with pytest.raises(PermissionError):
        os.mkfifo(work / "fifo")


def test_large_file_checksum_and_sequential_io(work: Path, shared_cluster: LocalCluster) -> None:
    data = os.urandom(5 * 1024 * 1024 + 123)  # spans many of the test cluster's blocks
    src = work.parent.parent.parent / "big.src"  # a local file beside the mount point
    src.write_bytes(data)
    target = work / "big"
    subprocess.run(
        ["dd", f"if={src}", f"of={target}", "bs=1M", "conv=fsync", "status=none"], check=True
    )
    mounted_sum = subprocess.run(
        ["sha256sum", str(target)], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    with shared_cluster.client() as fs:
        recorded = hashlib.sha256(fs.read_bytes(f"/tmp/{work.name}/big")).hexdigest()
        stored = fs.checksum(f"/tmp/{work.name}/big").sha256  # what the mount's commit recorded
    assert mounted_sum == recorded == stored == hashlib.sha256(data).hexdigest()


def test_close_to_open_a_reader_keeps_its_version(work: Path) -> None:
    f = work / "f"
    f.write_bytes(b"one" * 1000)
    with open(f, "rb") as reader:
        with open(f, "r+b") as writer:
            writer.write(b"TWO")
            assert f.read_bytes().startswith(b"one")  # not committed yet: others see the old
        assert reader.read(3) == b"one"  # opened before the close: its version
    assert f.read_bytes().startswith(b"TWO")  # opened after the close: the new


def test_real_programs(work: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    for i in range(5):
        (src / "a" / f"f{i}").write_text(f"file {i}\n" * (i + 1))
    (src / "a" / "b" / "bin").write_bytes(os.urandom(300_000))
    (src / "a" / "f1").chmod(0o600)
    os.utime(src / "a" / "f0", (1_500_000_000, 1_500_000_000))

    def run(*cmd: str, cwd: Path | None = None) -> str:
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
        assert r.returncode == 0, f"{cmd}: {r.stderr}"
        return r.stdout

    run("cp", "-a", str(src), str(work / "cp"))
    run("diff", "-r", str(src), str(work / "cp"))
    assert (work / "cp" / "a" / "f0").stat().st_mtime == 1_500_000_000
    assert (work / "cp" / "a" / "f1").stat().st_mode & 0o777 == 0o600
    run("cp", "-a", str(work / "cp"), str(tmp_path / "back"))
    run("diff", "-r", str(src), str(tmp_path / "back"))

    if shutil.which("rsync") or os.environ.get("CI") == "true":
        run("rsync", "-a", f"{src}/", str(work / "rs"))
        run("diff", "-r", str(src), str(work / "rs"))
        run("rsync", "-a", f"{work / 'rs'}/", str(tmp_path / "rs-back"))
        run("diff", "-r", str(src), str(tmp_path / "rs-back"))

    run("tar", "cf", str(tmp_path / "t.tar"), "-C", str(src), ".")
    (work / "tx").mkdir()
    run("tar", "xf", str(tmp_path / "t.tar"), "-C", str(work / "tx"))
    run("diff", "-r", str(src), str(work / "tx"))
    run("tar", "cf", str(work / "t2.tar"), "-C", str(work / "tx"), ".")
    (tmp_path / "tx2").mkdir()
    run("tar", "xf", str(work / "t2.tar"), "-C", str(tmp_path / "tx2"))
    run("diff", "-r", str(src), str(tmp_path / "tx2"))

    repo = tmp_path / "repo"
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    run("git", "init", "-q", str(repo))
    (repo / "x").write_text("x\n")
    run(*git, "-C", str(repo), "add", ".")
    run(*git, "-C", str(repo), "commit", "-qm", "one")
    clone = work / "clone"
    run("git", "clone", "-q", str(repo), str(clone))
    assert run("git", "-C", str(clone), "status", "--porcelain") == ""
    (clone / "x").write_text("changed\n")
    assert "x" in run("git", "-C", str(clone), "status", "--porcelain")
    run(*git, "-C", str(clone), "commit", "-qam", "two")
    assert run("git", "-C", str(clone), "status", "--porcelain") == ""
    assert len(run("git", "-C", str(clone), "log", "--oneline").splitlines()) == 2
    run("git", "-C", str(clone), "fsck", "--no-progress")

    # An editor's save: write a temporary file, fsync it, rename it over the original.
    doc = work / "doc.txt"
    doc.write_text("version one")
    tmp = work / ".doc.txt.swp"
    with open(tmp, "w") as out:
        out.write("version two")
        out.flush()
        os.fsync(out.fileno())
    os.rename(tmp, doc)
    assert doc.read_text() == "version two" and not tmp.exists()


def _stats(cluster: LocalCluster) -> float:
    """How many /fs/stat requests the name node has answered."""
    import urllib.request

    with urllib.request.urlopen(f"{cluster.url}/metrics") as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("pydfs_requests_total{") and 'route="/v1/fs/stat"' in line
    )


def test_listing_many_entries_is_one_call(work: Path, shared_cluster: LocalCluster) -> None:
    with shared_cluster.client() as fs:
        for i in range(200):
            fs.touch(f"/tmp/{work.name}/f{i:03}")
    time.sleep(1.1)  # past the TTL: nothing of the directory is cached
    before = _stats(shared_cluster)
    out = subprocess.run(["ls", "-l", str(work)], capture_output=True, text=True, check=True)
    assert len(out.stdout.splitlines()) == 201
    assert _stats(shared_cluster) - before <= 2  # the directory itself, not each entry


def test_random_io_against_a_model(work: Path) -> None:
    """In the spirit of fsx: random writes, reads, truncations and appends on an open file,
    each read checked against a model, then the whole file once closed and reopened."""
    import random

    rng = random.Random(17)
    model = bytearray(rng.randbytes(2 * 1024 * 1024))
    path = work / "fsx"
    path.write_bytes(model)
    fd = os.open(path, os.O_RDWR)
    try:
        for step in range(1500):
            op = rng.random()
            if op < 0.4:
                off, n = rng.randrange(0, len(model) + 1000), rng.randrange(1, 70_000)
                data = rng.randbytes(n)
                os.pwrite(fd, data, off)
                model.extend(bytes(max(0, off - len(model))))
                model[off : off + n] = data
            elif op < 0.8:
                off, n = rng.randrange(0, len(model) + 10), rng.randrange(1, 200_000)
                assert os.pread(fd, n, off) == bytes(model[off : off + n]), step
            elif op < 0.9:
                size = rng.randrange(0, 3 * 1024 * 1024)
                os.ftruncate(fd, size)
                model.extend(bytes(max(0, size - len(model))))
                del model[size:]
            elif op < 0.97:
                data = rng.randbytes(rng.randrange(1, 50_000))
                os.pwrite(fd, data, len(model))
                model += data
            else:
                os.fsync(fd)  # commits the content so far
            assert os.fstat(fd).st_size == len(model), step
    finally:
        os.close(fd)
    assert path.read_bytes() == bytes(model)


def test_changes_in_place_rewrite_only_the_blocks_they_touch(
    work: Path, shared_cluster: LocalCluster
) -> None:
    """A write in the middle, an append and a truncation upload the blocks they change; the
    new version shares every other block with the old, by id."""
    bs = BLOCK_SIZE
    model = bytearray(os.urandom(4 * bs + 1000))
    f = work / "f"
    f.write_bytes(model)
    path = f"/tmp/{work.name}/f"

    def blocks() -> list[str]:
        with shared_cluster.client() as fs:
            assert fs.read_bytes(path) == model
            return [b.id for b in fs.info(path).blocks or []]

    first = blocks()
    assert len(first) == 5
    with open(f, "r+b") as w:  # two bytes in the middle of the third block
        w.seek(2 * bs + 100)
        w.write(b"XY")
    model[2 * bs + 100 : 2 * bs + 102] = b"XY"
    changed = blocks()
    assert changed[2] != first[2]
    assert changed[:2] + changed[3:] == first[:2] + first[3:]

    extra = os.urandom(bs)
    with open(f, "ab") as w:  # grows the last block, and adds one
        w.write(extra)
    model += extra
    appended = blocks()
    assert len(appended) == 6 and appended[:4] == changed[:4]
    assert not set(appended[4:]) & set(changed)

    os.truncate(f, 2 * bs + 10)  # cuts the third block: the first two stay
    del model[2 * bs + 10 :]
    cut = blocks()
    assert len(cut) == 3 and cut[:2] == changed[:2] and cut[2] not in appended

    with open(f, "r+b") as w:  # shrunk then grown again: what was cut off is zeros
        os.ftruncate(w.fileno(), bs + 5)
        os.ftruncate(w.fileno(), 3 * bs)
        w.seek(2 * bs)
        w.write(b"Z")
    model[bs + 5 :] = bytes(2 * bs - 5)
    model[2 * bs] = ord("Z")
    regrown = blocks()
    assert regrown[0] == cut[0] and not set(regrown[1:]) & set(cut)


def test_errors_are_one_line(shared_cluster: LocalCluster, tmp_path: Path) -> None:
    require_fuse()
    cli = Cli(shared_cluster.url, tmp_path, shared_cluster.admin_token)
    (tmp_path / "m").mkdir()
    assert "no such" in cli.fails("mount", "/no/such/dir", str(tmp_path / "m"))
    assert "no such local directory" in cli.fails("mount", str(tmp_path / "missing"))
    assert not os.path.ismount(tmp_path / "m")


def test_background_mount_and_unmount(shared_cluster: LocalCluster, tmp_path: Path) -> None:
    """Without --foreground the command returns once mounted; fusermount3 -u ends the mount."""
    require_fuse()
    cli = Cli(shared_cluster.url, tmp_path, shared_cluster.admin_token)
    where = tmp_path / "m"
    where.mkdir()
    with shared_cluster.client() as fs:
        fs.mkdir("/tmp/bg")
        fs.write_bytes("/tmp/bg/f", b"mounted")
    out = cli("mount", "/tmp/bg", str(where), "--log", str(tmp_path / "log")).ok().out
    try:
        assert "mounted on" in out
        assert (where / "f").read_bytes() == b"mounted"
    finally:
        subprocess.run(["fusermount3", "-u", str(where)], check=True)
    pid = int(out.split("pid ")[1].split(",")[0])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and b"zombie" not in _state(pid):
        assert time.monotonic() < deadline, "the mount process outlived its unmount"
        time.sleep(0.05)


def _state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return b"zombie"


def test_two_users_two_mounts(shared_cluster: LocalCluster, tmp_path: Path) -> None:
    """Each mount acts as its own user: the name node refuses what that user may not do, and
    what one mount changes shows in the other within the TTL."""
    with shared_cluster.client() as fs:
        bob_token = fs.add_user("bob")
        fs.mkdir("/tmp/shared")
    with (
        mounted(shared_cluster, tmp_path / "admin") as admin,
        mounted(shared_cluster, tmp_path / "bob", token=bob_token) as bob,
    ):
        (admin / "tmp/shared/notes").write_bytes(b"admin's")
        assert (bob / "tmp/shared/notes").read_bytes() == b"admin's"
        with pytest.raises(PermissionError):
            (bob / "tmp/shared/notes").write_bytes(b"bob's")
        with pytest.raises(PermissionError):
            (bob / "tmp/shared/new").write_bytes(b"bob's")
        assert not os.access(bob / "tmp/shared/notes", os.W_OK)
        assert os.access(bob / "tmp/shared/notes", os.R_OK)
        (admin / "tmp/shared/notes").chmod(0o600)
        with pytest.raises(PermissionError):
            (bob / "tmp/shared/notes").read_bytes()
        assert (admin / "tmp/shared/notes").read_bytes() == b"admin's"

        # Owners: each mount's own user is the local user; others map by name (bob and admin
        # are no local users here, so nobody).
        mine = bob / "user/bob/mine"
        assert not (admin / "user/bob/mine").exists()  # a miss the admin's mount now caches
        mine.write_bytes(b"bob's")
        assert mine.stat().st_uid == os.getuid()
        started = time.monotonic()
        while not (admin / "user/bob/mine").exists():
            assert time.monotonic() - started < 5, "bob's file never showed in the other mount"
            time.sleep(0.05)
        assert time.monotonic() - started < 2.5  # the TTL (1 s), with room for a slow machine
        assert (admin / "user/bob/mine").read_bytes() == b"bob's"
        import pwd

        try:
            expected = pwd.getpwnam("bob").pw_uid
        except KeyError:
            expected = pwd.getpwnam("nobody").pw_uid
        assert (admin / "user/bob/mine").stat().st_uid == expected
