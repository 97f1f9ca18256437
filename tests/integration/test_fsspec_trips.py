"""pydfs:// bulk calls in few name node requests, counted from its ``/metrics``; and that the
batched and parallel forms keep fsspec's semantics (compared with fsspec's local filesystem)."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import fsspec.asyn
import pytest
from fsspec.implementations.local import LocalFileSystem

from pydfs import PermissionDenied, wire
from pydfs.cluster import LocalCluster
from pydfs.fsspec import PydfsFileSystem
from tests.integration.test_metrics import scrape

N = 50  # files


def connect(cluster: LocalCluster, token: str) -> PydfsFileSystem:
    return PydfsFileSystem(namenode=cluster.url, token=token, skip_instance_cache=True)


@pytest.fixture(scope="module")
def fs(shared_cluster: LocalCluster) -> Iterator[PydfsFileSystem]:
    fs = connect(shared_cluster, shared_cluster.admin_token)
    yield fs
    fsspec.asyn.sync(fs.loop, fs.aclose)


@pytest.fixture
def top(fs: PydfsFileSystem) -> Iterator[str]:
    path = f"/trips-{uuid.uuid4().hex[:8]}"
    yield path
    if fs.exists(path):
        fs.rm(path, recursive=True)


class Requests:
    """Name node requests made by the client, by route (heartbeats and scrapes left out)."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.url = cluster.url
        self.before = self._now()

    def _now(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for (name, labels), value in scrape(self.url).items():
            route = dict(labels).get("route", "")
            if name == "pydfs_requests_total" and route.startswith(("/v1/fs", "/v1/uploads")):
                counts[route.removeprefix("/v1")] += int(value)
        return counts

    def moved(self) -> Counter[str]:
        return self._now() - self.before


def tree(top: str, files: int = N, dirs: int = 5) -> dict[str, bytes]:
    return {f"{top}/d{i % dirs}/f{i}": f"file {i}".encode() for i in range(files)}


def test_pipe_makes_each_directory_once(
    fs: PydfsFileSystem, shared_cluster: LocalCluster, top: str
) -> None:
    files = tree(top)
    count = Requests(shared_cluster)
    fs.pipe(files)
    moved = count.moved()
    assert moved["/fs/mkdir"] == 5  # one per directory (before: one per file)
    commits = moved["/uploads/{id}/commit"] + moved["/uploads/commit-many"]
    assert commits < N // 2  # commits go together (before: one per file)
    assert sum(moved.values()) <= commits + 5 + 10  # commits, mkdirs and a few lease batches
    assert fs.cat(sorted(files)) == dict(sorted(files.items()))


def test_put_of_many_files_commits_them_together(
    fs: PydfsFileSystem, shared_cluster: LocalCluster, top: str, tmp_path: Path
) -> None:
    files = tree(top)
    local = tmp_path / "src"
    for path, data in files.items():
        (local / os.path.relpath(path, top)).parent.mkdir(parents=True, exist_ok=True)
        (local / os.path.relpath(path, top)).write_bytes(data)
    count = Requests(shared_cluster)
    fs.put(str(local), top, recursive=True)
    moved = count.moved()
    commits = moved["/uploads/{id}/commit"] + moved["/uploads/commit-many"]
    assert moved["/uploads/commit-many"] >= 1 and commits < N // 2, moved
    assert fs.cat(sorted(files)) == dict(sorted(files.items()))


def test_rm_of_many_paths_is_one_request(
    fs: PydfsFileSystem, shared_cluster: LocalCluster, top: str
) -> None:
    files = tree(top)
    fs.pipe(files)
    count = Requests(shared_cluster)
    fs.rm(sorted(files))  # before: one delete per file
    assert sum(count.moved().values()) == 1
    assert fs.find(top) == []
    fs.pipe(files)
    count = Requests(shared_cluster)
    fs.rm(top, recursive=True)  # before: a delete refused as a directory, then an rmdir
    assert sum(count.moved().values()) == 1
    assert not fs.exists(top)


def test_get_looks_each_file_up_once(
    fs: PydfsFileSystem, shared_cluster: LocalCluster, top: str, tmp_path: Path
) -> None:
    files = tree(top)
    fs.pipe(files)
    count = Requests(shared_cluster)
    fs.get(top, str(tmp_path / "got"), recursive=True)
    stats = count.moved()["/fs/stat"]
    assert stats <= N + 10  # one per file, with its read tokens, and per directory (before: two)
    got = {p: (tmp_path / "got" / os.path.relpath(p, top)).read_bytes() for p in files}
    assert got == files


def test_du_takes_sizes_from_listings(
    fs: PydfsFileSystem, shared_cluster: LocalCluster, top: str
) -> None:
    files = tree(top)
    fs.pipe(files)
    count = Requests(shared_cluster)
    assert fs.du(top) == sum(len(v) for v in files.values())
    assert count.moved() == Counter({"/fs/list": 6})  # sizes from the listings (before: stats)


def test_cat_ranges_looks_a_file_up_once(
    fs: PydfsFileSystem, shared_cluster: LocalCluster, top: str
) -> None:
    data = os.urandom(100_000)
    fs.pipe(f"{top}/big", data)
    starts = [i * 1000 for i in range(20)]
    count = Requests(shared_cluster)
    got_ranges = fs.cat_ranges([f"{top}/big"] * 20, starts, [s + 10 for s in starts])
    assert got_ranges == [data[s : s + 10] for s in starts]
    assert count.moved() == Counter({"/fs/stat": 1})  # before: one per range


def test_writes_make_missing_parents(fs: PydfsFileSystem, top: str, tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.write_bytes(b"local")
    fs.pipe(f"{top}/a/b/piped", b"piped")
    fs.put_file(str(local), f"{top}/c/put")
    fs.cp_file(f"{top}/a/b/piped", f"{top}/d/e/copied")
    fs.mv(f"{top}/c/put", f"{top}/f/moved")
    fs.touch(f"{top}/g/touched")
    with fs.open(f"{top}/h/written", "wb") as f:
        f.write(b"written")
    assert fs.cat(f"{top}/d/e/copied") == b"piped"
    assert fs.cat(f"{top}/f/moved") == b"local"
    assert fs.cat(f"{top}/h/written") == b"written"
    assert fs.isfile(f"{top}/g/touched")
    with pytest.raises(FileNotFoundError):
        fs.cp_file(f"{top}/no-such", f"{top}/i/copied")
    with pytest.raises(FileExistsError):
        fs.pipe(f"{top}/a/b/piped", b"again", mode="create")


def test_rm_keeps_its_meaning(fs: PydfsFileSystem, top: str) -> None:
    files = tree(top, 10, 2)
    fs.pipe(files)
    with pytest.raises(IsADirectoryError):  # not recursive: no directory goes, nor anything else
        fs.rm([f"{top}/d0/f0", f"{top}/d1"])
    assert fs.exists(f"{top}/d0/f0")
    with pytest.raises(FileNotFoundError):
        fs.rm(f"{top}/no-such")
    fs.rm([f"{top}/d0/f0", f"{top}/no-such"])  # of several, a missing one is passed over
    assert not fs.exists(f"{top}/d0/f0")
    fs.rm(f"{top}/d1/*")
    assert fs.ls(f"{top}/d1") == []
    fs.rm(f"{top}/d*", recursive=True)
    assert fs.ls(top) == []


def test_a_batch_deletes_all_or_none(
    fs: PydfsFileSystem, shared_cluster: LocalCluster, top: str
) -> None:
    name = f"u{uuid.uuid4().hex[:6]}"
    with shared_cluster.client() as admin:
        token = admin.add_user(name)
        admin.mkdir(top)
        admin.write_bytes(f"{top}/admins", b"a")
        admin.chmod(top, 0o1777)  # sticky: only its owner may delete a file
        with pytest.raises(ValueError, match="at most"):
            admin._run(
                admin._aio.rpc.call(
                    "POST",
                    "/fs/delete-many",
                    wire.DeleteManyRequest([f"/x{i}" for i in range(wire.MAX_DELETE_BATCH + 1)]),
                )
            )
    user = connect(shared_cluster, token)
    try:
        user.pipe({f"{top}/mine{i}": b"m" for i in range(3)})
        admin_file = f"{top}/admins"
        with pytest.raises(PermissionDenied):
            user.rm([f"{top}/mine0", f"{top}/mine1", admin_file])
        assert user.exists(f"{top}/mine0") and user.exists(admin_file)
        user.rm([f"{top}/mine0", f"{top}/mine1"])
        assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(top, detail=False)) == [
            "admins",
            "mine2",
        ]
    finally:
        fsspec.asyn.sync(user.loop, user.aclose)


def test_walk_find_du_glob_match_a_local_filesystem(
    fs: PydfsFileSystem, shared_cluster: LocalCluster, top: str, tmp_path: Path
) -> None:
    local = LocalFileSystem()
    root = tmp_path.as_posix() + "/mirror"
    layout = {"a/1": b"1", "a/b/2": b"22", "a/b/c/3": b"333", "d/4": b"4444", "5": b"55555"}
    fs.pipe({f"{top}/{k}": v for k, v in layout.items()})
    fs.mkdir(f"{top}/empty")
    for k, v in layout.items():
        local.makedirs(os.path.dirname(f"{root}/{k}"), exist_ok=True)
        local.pipe_file(f"{root}/{k}", v)
    local.mkdir(f"{root}/empty")

    def rel(found: object, base: str) -> object:
        if isinstance(found, dict):
            return {os.path.relpath(k, base): v for k, v in found.items()}
        assert isinstance(found, list)
        return sorted(os.path.relpath(p, base) for p in found)

    for kwargs in [{}, {"withdirs": True}, {"maxdepth": 1}, {"maxdepth": 2, "withdirs": True}]:
        assert rel(fs.find(top, **kwargs), top) == rel(local.find(root, **kwargs), root), kwargs
    assert sorted(fs.find(top, withdirs=True, detail=True)) == fs.find(top, withdirs=True)
    assert fs.find(f"{top}/5") == [f"{top}/5"]
    assert fs.find(f"{top}/no-such") == []
    assert fs.du(top) == local.du(root) == 15
    assert rel(fs.du(top, total=False), top) == rel(local.du(root, total=False), root)
    for pattern in ["*", "**", "a/**", "*/b/*", "?"]:
        assert rel(fs.glob(f"{top}/{pattern}"), top) == rel(
            local.glob(f"{root}/{pattern}"), root
        ), pattern

    def walked(fsys: object, base: str, **kwargs: object) -> list[tuple[str, list[str], list[str]]]:
        return sorted(
            (os.path.relpath(d, base), sorted(ds), sorted(fs_))
            for d, ds, fs_ in fsys.walk(base, **kwargs)  # type: ignore[attr-defined]
        )

    for kwargs in [{}, {"maxdepth": 2}, {"topdown": False}]:
        assert walked(fs, top, **kwargs) == walked(local, root, **kwargs), kwargs

    order = [d for d, _, _ in fs.walk(top, topdown=False)]
    assert all(order.index(d) < order.index(os.path.dirname(d)) for d in order if d != top)

    seen = []
    for d, dirs, _ in fs.walk(top):  # top down, pruning in place skips subtrees
        seen.append(os.path.relpath(d, top))
        dirs[:] = [x for x in dirs if x != "a"]
    assert sorted(seen) == [".", "d", "empty"]
