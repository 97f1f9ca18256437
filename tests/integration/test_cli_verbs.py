"""The verbs HDFS and coreutils users type on day one, through the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pydfs.cluster import LocalCluster
from tests.conftest import BLOCK_SIZE, Cli


@pytest.fixture
def home(cli: Cli, request: pytest.FixtureRequest) -> str:
    path = f"/v/{request.node.name}"
    cli("mkdir", "-p", path).ok()
    cli("cd", path).ok()
    return path


def _tree(root: Path) -> dict[str, bytes]:
    """A local tree of a few files, one of several blocks; returns relative path -> content."""
    files = {
        "a.txt": b"alpha\n",
        "sub/b.csv": b"1,2\n3,4\n",
        "sub/c.csv": b"",
        "sub/deeper/big.bin": os.urandom(3 * BLOCK_SIZE + 5),
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def test_ls_long_recursive_and_several_paths(cli: Cli, home: str) -> None:
    cli("mkdir", "-p", "d/e").ok()
    cli("put", "-", "d/f", input=b"12345").ok()
    cli("touch", "g").ok()
    assert cli("ls").ok().out.split() == ["d/", "g"]
    long = cli("ls", "-l", "d").ok().out.splitlines()
    assert long[0].startswith("drwxr-xr-x  admin") and long[0].endswith(" e/")
    assert long[1].split()[3] == "5" and long[1].endswith(" f")
    assert cli("ls", "-R", ".").ok().out.split("\n\n")[0] == f"{home}:\nd/\ng"
    assert f"{home}/d/e:" in cli("ls", "-R").ok().out
    both = json.loads(cli("--json", "ls", "d", "g").ok().out)
    assert sorted(both) == [f"{home}/d", f"{home}/g"] and both[f"{home}/g"][0]["name"] == "g"
    assert "no such" in cli.fails("ls", "d", "nothing")


def test_du_df_count(cli: Cli, home: str, shared_cluster: LocalCluster) -> None:
    cli("mkdir", "d").ok()
    cli("put", "-", "d/f", input=b"x" * 1000).ok()
    cli("put", "--replication", "1", "-", "d/g", input=b"y" * 500).ok()
    assert cli("du", "-s", "d").ok().out.split() == ["1500", "2500", f"{home}/d"]
    assert cli("du", "d").ok().out.splitlines() == [
        f"1000  2000  {home}/d/f",
        f" 500   500  {home}/d/g",
    ]
    assert "1000 B" in cli("du", "-h", "d").ok().out
    usage = json.loads(cli("--json", "du", "-s", ".").ok().out)
    assert (usage["files"], usage["directories"], usage["size"]) == (2, 2, 1500)
    assert cli("count", "d").ok().out.splitlines()[1].split() == ["1", "2", "1500", f"{home}/d"]
    df = cli("df", "-h").ok().out.splitlines()
    assert df[0].split() == ["Filesystem", "Size", "Used", "Available", "Use%"]
    assert df[1].startswith(shared_cluster.url) and "GiB" in df[1]
    assert json.loads(cli("--json", "df").ok().out)["live_nodes"] == 2


def test_cat_head_tail(cli: Cli, home: str) -> None:
    lines = b"".join(b"line %d\n" % i for i in range(1, 30001))  # several blocks
    cli("put", "-", "log", input=lines).ok()
    cli("put", "-", "short", input=b"no newline at the end").ok()
    assert cli("cat", "log", "short").ok().raw == lines + b"no newline at the end"
    assert cli("head", "log").ok().raw == b"".join(b"line %d\n" % i for i in range(1, 11))
    assert cli("head", "-n", "2", "log").ok().raw == b"line 1\nline 2\n"
    assert cli("head", "-c", "3", "log").ok().raw == b"lin"
    assert cli("tail", "-n", "2", "log").ok().raw == b"line 29999\nline 30000\n"
    assert cli("tail", "log").ok().raw == lines[-(len(lines) - lines.index(b"line 29991")) :]
    assert cli("tail", "-c", "4", "short").ok().raw == b" end"
    assert cli("tail", "-n", "1", "short").ok().raw == b"no newline at the end"
    assert "is a directory" in cli.fails("cat", ".")


def test_tail_follows_a_file_as_it_is_replaced(cli: Cli, home: str) -> None:
    cli("put", "-", "grows", input=b"one\ntwo\n").ok()
    with subprocess.Popen(
        [sys.executable, "-m", "pydfs", "tail", "-f", "-s", "0.1", f"{home}/grows"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli.env,
    ) as follower:
        try:
            assert follower.stdout is not None
            assert follower.stdout.readline() == b"one\n"
            assert follower.stdout.readline() == b"two\n"
            cli("put", "-f", "-", "grows", input=b"one\ntwo\nthree\n").ok()  # appended
            assert follower.stdout.readline() == b"three\n"
            cli("put", "-f", "-", "grows", input=b"new\n").ok()  # replaced, shorter
            assert follower.stdout.readline() == b"new\n"
        finally:
            follower.terminate()
            _, err = follower.communicate(timeout=10)
    assert b"was replaced" in err


def test_test_and_find(cli: Cli, home: str) -> None:
    cli("mkdir", "-p", "x/y").ok()
    cli("touch", "x/empty.csv").ok()
    cli("put", "-", "x/y/full.csv", input=b"1").ok()
    cli("touch", "x/y/notes.txt").ok()
    for flag, path, code in [
        ("-e", "x", 0),
        ("-e", "nothing", 1),
        ("-d", "x", 0),
        ("-d", "x/empty.csv", 1),
        ("-f", "x/empty.csv", 0),
        ("-z", "x/empty.csv", 0),
        ("-s", "x/empty.csv", 1),
        ("-s", "x/y/full.csv", 0),
    ]:
        r = cli("test", flag, path)
        assert (r.code, r.out, r.err) == (code, "", ""), (flag, path)
    assert cli("find", "x", "-name", "*.csv").ok().out.split() == [
        f"{home}/x/empty.csv",
        f"{home}/x/y/full.csv",
    ]
    assert cli("find", "-type", "d").ok().out.split() == [home, f"{home}/x", f"{home}/x/y"]
    assert json.loads(cli("--json", "find", "x", "-name", "notes*").ok().out) == [
        f"{home}/x/y/notes.txt"
    ]


def test_rm_r_f_several_and_globs(cli: Cli, home: str) -> None:
    for name in ("2026-01.log", "2026-02.log", "2025-12.log", "keep.txt"):
        cli("touch", name).ok()
    cli("mkdir", "-p", "dir/sub").ok()
    cli("touch", "dir/sub/f").ok()
    assert json.loads(cli("--json", "rm", f"{home}/2026-*").ok().out) == {
        "deleted": [f"{home}/2026-01.log", f"{home}/2026-02.log"]
    }
    assert "no match" in cli.fails("rm", "2026-*")
    assert "use rm -r" in cli.fails("rm", "dir")
    cli("rm", "-r", "dir", "2025-12.log").ok()
    cli("rm", "-f", "missing", "also-missing").ok()
    assert "no such" in cli.fails("rm", "missing")
    assert cli("ls").ok().out.split() == ["keep.txt"]


def test_mv_and_cp_several_sources_and_cp_r(cli: Cli, home: str) -> None:
    for name in ("a", "b", "c"):
        cli("put", "-", name, input=name.encode()).ok()
    cli("mkdir", "into").ok()
    cli("mv", "a", "b", "into").ok()
    assert cli("ls", "into").ok().out.split() == ["a", "b"]
    assert "2 sources go into one" in cli.fails("mv", "c", "into/a", "elsewhere")
    assert "not a directory" in cli.fails("mv", "c", "into/a", "into/b")
    cli("mkdir", "copies").ok()
    cli("cp", "into/*", "c", "copies").ok()
    assert cli("ls", "copies").ok().out.split() == ["a", "b", "c"]
    assert "use cp -r" in cli.fails("cp", "into", "tree")
    cli("cp", "-r", "into", "tree").ok()
    assert cli("cat", "tree/a", "tree/b").ok().raw == b"ab"
    cli("cp", "-r", "into", "tree").ok()  # an existing directory: copied into it
    assert cli("ls", "tree").ok().out.split() == ["a", "b", "into/"]
    exists = cli("cp", "-r", "into", "tree")  # tree/into/a and b exist: each one is said
    assert exists.code == 4 and exists.err.count("already exists") == 2
    assert "into itself" in cli.fails("cp", "-r", "into", "into/deeper")


def test_put_r_and_get_r_whole_trees_and_globs(cli: Cli, home: str, tmp_path: Path) -> None:
    files = _tree(tmp_path / "local")
    done = json.loads(cli("--json", "put", "-r", str(tmp_path / "local"), "up").ok().out)
    assert sorted(d["path"] for d in done) == sorted(f"{home}/up/{n}" for n in files)
    cli("put", "-r", str(tmp_path / "local"), "up").ok()  # an existing directory: into it
    assert "up/local/" in cli("find", "up/local", "-name", "big.bin").ok().out
    exists = cli("put", "-r", str(tmp_path / "local"), "up")
    assert exists.code == 4 and exists.err.count("already exists") == len(files)
    cli("put", "-r", "-f", "--parallel", "2", str(tmp_path / "local"), "up").ok()
    cli("get", "-r", "up", str(tmp_path / "back")).ok()
    for name, data in files.items():
        assert (tmp_path / "back" / name).read_bytes() == data
    (tmp_path / "csv").mkdir()
    cli("get", f"{home}/up/sub/*.csv", str(tmp_path / "csv")).ok()
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == ["b.csv", "c.csv"]
    assert "use get -r" in cli.fails("get", "up", str(tmp_path / "nope"))
    assert "use put -r" in cli.fails("put", str(tmp_path / "local"), "x")
    cli("mkdir", "csv2").ok()
    several = cli("put", str(tmp_path / "local/a.txt"), str(tmp_path / "local/sub/b.csv"), "csv2")
    assert "2 files" in several.ok().out and cli("ls", "csv2").ok().out.split() == [
        "a.txt",
        "b.csv",
    ]


def test_checksum_equals_sha256sum_and_survives_copies(cli: Cli, home: str, tmp_path: Path) -> None:
    data = os.urandom(2 * BLOCK_SIZE + 99)
    (tmp_path / "f.bin").write_bytes(data)
    cli("put", str(tmp_path / "f.bin"), "f.bin").ok()
    local = subprocess.run(
        ["sha256sum", "f.bin"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.split()[0]
    assert cli("checksum", "f.bin").ok().out == f"{local}  {home}/f.bin\n"
    cli("cp", "f.bin", "copy.bin").ok()
    answer = json.loads(cli("--json", "checksum", "copy.bin").ok().out)
    assert (answer["sha256"], answer["source"]) == (local, "recorded")
    assert json.loads(cli("--json", "checksum", "--verify", "f.bin").ok().out)["source"] == (
        "verified"
    )
    cli("put", "-", "small", input=b"abc").ok()  # a small file goes by another write path
    assert cli("checksum", "small").ok().out.split()[0] == hashlib.sha256(b"abc").hexdigest()
    assert "is a directory" in cli.fails("checksum", ".")


def test_checksum_of_a_file_written_without_one_is_computed(cli: Cli, home: str) -> None:
    cli("touch", "made-empty").ok()  # made by the name node: no writer computed a hash
    r = cli("checksum", "made-empty").ok()
    assert r.out.split()[0] == hashlib.sha256(b"").hexdigest()
    assert "no SHA-256 was recorded" in r.err
    assert json.loads(cli("--json", "checksum", "made-empty").ok().out)["source"] == "computed"
