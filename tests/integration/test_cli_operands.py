"""Operands as coreutils treat them: every one is tried, what cannot be done is named on stderr
(one line each) and the exit code is not 0; recursive commands never take what they cannot read
for empty; a quoted path that exists is itself, not a glob."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pydfs.cluster import LocalCluster
from tests.conftest import Cli


@pytest.fixture
def home(cli: Cli, request: pytest.FixtureRequest) -> str:
    path = f"/o/{request.node.name}"
    cli("mkdir", "-p", path).ok()
    cli("cd", path).ok()
    return path


def _user(shared_cluster: LocalCluster, tmp_path: Path, name: str) -> Cli:
    with shared_cluster.client() as admin:
        token = admin.add_user(name)
    user = Cli(shared_cluster.url, tmp_path / name, token)
    user.home.mkdir()
    return user


def test_recursive_commands_name_what_they_cannot_read(
    shared_cluster: LocalCluster, tmp_path: Path
) -> None:
    bob = _user(shared_cluster, tmp_path, "bob")
    proj = "/user/bob/proj"
    bob("mkdir", "-p", f"{proj}/priv", f"{proj}/pub").ok()
    bob("put", "-", f"{proj}/priv/f", input=b"secret").ok()
    bob("put", "-", f"{proj}/pub/f", input=b"public").ok()
    bob("chmod", "300", f"{proj}/priv").ok()  # may enter and write, not list
    denied = f"pydfs: error: {proj}/priv: permission denied"
    for command in (
        ["get", "-r", proj, str(tmp_path)],
        ["cp", "-r", proj, "/user/bob/copy"],
        ["du", "-s", proj],
        ["count", proj],
        ["find", proj],
        ["ls", "-R", proj],
        ["ls", "-R", f"{proj}/priv"],
    ):
        r = bob(*command)
        assert (r.code, r.err.splitlines()) == (5, [denied]), command
    assert (tmp_path / "proj/pub/f").read_bytes() == b"public"
    assert not (tmp_path / "proj/priv").exists()  # not made empty
    assert bob("cat", "/user/bob/copy/pub/f").ok().raw == b"public"
    assert f"{proj}/priv:" not in bob("ls", "-R", proj).out  # not shown as empty


def test_put_r_names_what_it_skips_and_goes_on(cli: Cli, home: str, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for name in ("a/f", "locked/f", "top"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(name.encode())
    (tree / "locked").chmod(0)
    (tree / "linkdir").symlink_to("a")
    (tree / "linkfile").symlink_to("a/f")
    (tree / "dangling").symlink_to("nowhere")
    os.mkfifo(tree / "fifo")
    # root reads anything: drop the capabilities that let it, as a plain user is
    setpriv = shutil.which("setpriv")
    if os.geteuid() == 0 and setpriv is None:
        pytest.skip("running as root without setpriv")
    drop = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    line = [*(drop if os.geteuid() == 0 else []), sys.executable, "-m", "pydfs"]
    r = subprocess.run(
        [*line, "put", "-r", str(tree), "up"], env=cli.env, capture_output=True, text=True
    )
    (tree / "locked").chmod(0o755)
    assert r.returncode == 1, r.stderr  # two kinds of error: 1
    assert sorted(r.stderr.splitlines()) == [
        f"pydfs: error: {tree}/dangling: a symbolic link to nothing",
        f"pydfs: error: {tree}/locked: Permission denied",
        f"pydfs: warning: {tree}/fifo: not a regular file: skipped",
        f"pydfs: warning: {tree}/linkdir: a symbolic link to a directory: skipped",
    ]
    assert cli("find", "up", "-type", "f").ok().out.split() == [
        f"{home}/up/linkfile",
        f"{home}/up/top",
        f"{home}/up/a/f",
    ]


def test_a_path_that_exists_is_itself_and_backslash_escapes(cli: Cli, home: str) -> None:
    cli("touch", "a[1].txt", "a1.txt", "b*", "bx").ok()
    cli("rm", "a[1].txt").ok()  # that file, not a1.txt which the glob would match
    assert cli("ls").ok().out.split() == ["a1.txt", "b*", "bx"]
    assert json.loads(cli("--json", "stat", "b*").ok().out)["path"] == f"{home}/b*"
    cli("touch", "a[1].txt").ok()
    cli("rm", "a\\[1\\].txt").ok()  # escaped: plain, whether it exists or not
    assert cli("ls").ok().out.split() == ["a1.txt", "b*", "bx"]
    assert cli("find", ".", "-name", "b\\*").ok().out.split() == [f"{home}/b*"]
    cli("rm", "a?.txt").ok()  # no such name: a glob
    assert cli("ls").ok().out.split() == ["b*", "bx"]


def test_globs_over_unreadable_directories_say_so(
    shared_cluster: LocalCluster, tmp_path: Path
) -> None:
    carol = _user(shared_cluster, tmp_path, "carol")
    assert carol.fails("ls", "/user/admin/*") == "pydfs: error: /user/admin: permission denied"
    r = carol("ls", "/user/*/")
    assert r.code == 5 and "pydfs: error: /user/admin: permission denied" in r.err.splitlines()
    assert "/user/carol:" in r.out  # the others are listed


def test_every_operand_is_tried(cli: Cli, home: str) -> None:
    cli("mkdir", "d").ok()
    cli("touch", "a", "b", "d/in").ok()
    r = cli("rm", "a", "missing", "b")
    assert (r.code, r.err) == (3, f"pydfs: error: {home}/missing: no such file or directory\n")
    assert cli("ls").ok().out.split() == ["d/"]
    r = cli("ls", "d", "missing")
    assert r.code == 3 and r.out == f"{home}/d:\nin\n"
    r = cli("--json", "stat", "d", "nothing*")
    assert r.code == 3 and [s["path"] for s in json.loads(r.out)] == [f"{home}/d"]
    assert json.loads(r.err) == {"error": "not_found", "message": "nothing*: no match", "exit": 3}


def test_tail_n_0_prints_nothing_and_the_interval_has_a_floor(cli: Cli, home: str) -> None:
    cli("put", "-", "f", input=b"one\ntwo\n").ok()
    assert cli("tail", "-n", "0", "f").ok().raw == b""
    for interval in ("0", "-1", "0.01", "nan"):
        assert "at least 0.1 s" in cli.fails("tail", "-f", "-s", interval, "f")


def test_get_into_a_missing_directory_fails(cli: Cli, home: str, tmp_path: Path) -> None:
    cli("put", "-", "f", input=b"x").ok()
    assert (
        cli.fails("get", "f", f"{tmp_path}/nodir/")
        == f"pydfs: error: {tmp_path}/nodir/: no such directory"
    )
    assert not (tmp_path / "nodir").exists()
    (tmp_path / "file").write_bytes(b"")
    assert "not a directory" in cli.fails("get", "f", f"{tmp_path}/file/")


def test_json_shapes_follow_the_operands(cli: Cli, home: str) -> None:
    cli("put", "-", "f", input=b"x").ok()
    for command in (["du", "-s", "f"], ["count", "f"], ["checksum", "f"]):  # one plain path
        assert isinstance(json.loads(cli("--json", *command).ok().out), dict), command
    for command in (["du", "-s", "f", "."], ["count", "f*"], ["checksum", "f*"], ["du", "f"]):
        assert isinstance(json.loads(cli("--json", *command).ok().out), list), command


def test_reset_admin_takes_data_dir_before_the_word(cli: Cli, tmp_path: Path) -> None:
    line = cli.fails("namenode", "--data-dir", str(tmp_path), "reset-admin")
    assert line == f"pydfs: error: {tmp_path} holds no name node (no namespace.sqlite3)"


def test_resetting_ones_own_token_keeps_one_logged_in(
    cli: Cli, shared_cluster: LocalCluster, tmp_path: Path
) -> None:
    token = json.loads(cli("--json", "admin", "user", "add", "boss", "--admin").ok().out)
    (tmp_path / "token").write_text(token["token"])
    boss = Cli("", tmp_path / "boss", "")  # its token from its client config, as after login
    boss.home.mkdir()
    boss("login", "--namenode", shared_cluster.url, "--token-file", str(tmp_path / "token")).ok()
    boss("cd", "/tmp").ok()
    said = boss("admin", "user", "reset-token", "boss").ok().out
    assert "it is your own: saved in" in said
    assert boss("whoami").ok().out.startswith("boss ")
    assert boss("pwd").ok().out.strip() == "/tmp"  # the working directory came along
