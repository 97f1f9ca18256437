"""Symbolic links through a real FUSE mount: made, read, listed, followed by the kernel, and
carried by ``cp -a``, ``rsync -a`` and ``tar`` there and back."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pydfs.cluster import LocalCluster
from tests.integration.test_mount import mounted


@pytest.fixture(scope="module")
def mnt(shared_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with mounted(shared_cluster, tmp_path_factory.mktemp("mnt") / "m") as where:
        yield where


@pytest.fixture
def work(mnt: Path, request: pytest.FixtureRequest) -> Path:
    d = mnt / "tmp" / request.node.name
    d.mkdir()
    return d


def _run(*cmd: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{cmd}: {r.stderr}"


def _links(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): os.readlink(p) for p in sorted(root.rglob("*")) if p.is_symlink()
    }


def test_symlink_readlink_lstat_and_follow(work: Path, shared_cluster: LocalCluster) -> None:
    (work / "d").mkdir()
    (work / "d" / "f").write_bytes(b"content")
    os.symlink("d/f", work / "rel")
    os.symlink("/no/such/place", work / "dangling")
    assert os.readlink(work / "rel") == "d/f"
    st = os.lstat(work / "rel")
    assert stat.S_ISLNK(st.st_mode) and st.st_size == len("d/f")
    assert (work / "rel").read_bytes() == b"content"  # the kernel follows it
    os.symlink("d", work / "dirlink")
    assert os.listdir(work / "dirlink") == ["f"]
    assert not (work / "dangling").exists() and (work / "dangling").is_symlink()
    kinds = {e.name: e.is_symlink() for e in os.scandir(work)}
    assert kinds == {"d": False, "rel": True, "dangling": True, "dirlink": True}
    os.rename(work / "rel", work / "d" / "moved")  # now dangling: d/d/f
    assert os.readlink(work / "d" / "moved") == "d/f"
    os.unlink(work / "dirlink")
    assert (work / "d" / "f").read_bytes() == b"content"
    with shared_cluster.client() as fs:
        assert fs.readlink(f"/tmp/{work.name}/dangling") == "/no/such/place"
        assert fs.info(f"/tmp/{work.name}/d/moved").type == "symlink"


def test_trees_with_links_survive_cp_rsync_and_tar(work: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "f").write_text("file\n")
    os.symlink("a/f", src / "rel")
    os.symlink("../../missing", src / "a" / "dangling")

    _run("cp", "-a", str(src), str(work / "cp"))
    _run("cp", "-a", str(work / "cp"), str(tmp_path / "back"))
    _run("diff", "-r", "--no-dereference", str(src), str(tmp_path / "back"))
    assert _links(tmp_path / "back") == _links(work / "cp") == _links(src)
    assert _links(src) == {"a/dangling": "../../missing", "rel": "a/f"}

    if shutil.which("rsync") or os.environ.get("CI") == "true":
        _run("rsync", "-a", f"{src}/", str(work / "rs"))
        _run("rsync", "-a", f"{work / 'rs'}/", str(tmp_path / "rs-back"))
        assert _links(tmp_path / "rs-back") == _links(work / "rs") == _links(src)

    _run("tar", "cf", str(tmp_path / "t.tar"), "-C", str(src), ".")
    (work / "tx").mkdir()
    _run("tar", "xf", str(tmp_path / "t.tar"), "-C", str(work / "tx"))
    assert _links(work / "tx") == _links(src)
    _run("diff", "-r", "--no-dereference", str(src), str(work / "tx"))
