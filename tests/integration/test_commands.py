"""Every client command through the real CLI, as a subprocess, against a real cluster."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import BLOCK_SIZE, Cli, block_files


@pytest.fixture
def home(cli: Cli, request: pytest.FixtureRequest) -> str:
    """A fresh directory in the DFS for this test, and the CLI's working directory set to it."""
    path = f"/t/{request.node.name.replace('[', '_').replace(']', '')}"
    cli("mkdir", "-p", path).ok()
    assert cli("cd", path).ok().out.strip() == path
    return path


def test_write_read_info_delete_round_trip(cli: Cli, home: str, tmp_path: Path) -> None:
    data = os.urandom(3 * BLOCK_SIZE + 777)
    (tmp_path / "data.bin").write_bytes(data)

    put = cli("put", "data.bin").ok()  # remote path defaults to the base name in the cwd
    assert f"{home}/data.bin" in put.out

    info = json.loads(cli("--json", "stat", "data.bin").ok().out)
    assert info["size"] == len(data) and info["type"] == "file"
    assert len(info["blocks"]) == 4
    for block in info["blocks"]:
        assert len(block["nodes"]) == 2  # replication 2 on 2 data nodes
        assert all(n["url"].startswith("http://127.0.0.1:") for n in block["nodes"])
    human = cli("stat", "data.bin").ok().out
    assert "replication: 2" in human and info["blocks"][0]["id"] in human

    cli("get", "data.bin", "back.bin").ok()
    assert (tmp_path / "back.bin").read_bytes() == data

    cli("rm", "data.bin").ok()
    assert "no such file" in cli.fails("stat", "data.bin")


def test_commands_by_number_and_name(cli: Cli, home: str) -> None:
    cli("1", "by-number.txt").ok()  # file_create
    cli("file_create", "by-name.txt").ok()
    names = [e["name"] for e in json.loads(cli("--json", "9").ok().out)]  # read_directory
    assert names == ["by-name.txt", "by-number.txt"]


def test_file_create_refuses_existing(cli: Cli, home: str) -> None:
    cli("touch", "a").ok()
    assert "already exists" in cli.fails("touch", "a")
    assert json.loads(cli("--json", "stat", "a").ok().out)["size"] == 0


def test_file_read_to_stdout_and_refuses_overwrite(cli: Cli, home: str, tmp_path: Path) -> None:
    cli("put", "-", "s.txt", input=b"from stdin\n").ok()
    assert cli("get", "s.txt", "-").ok().raw == b"from stdin\n"
    (tmp_path / "s.txt").write_bytes(b"precious")
    assert "--force" in cli.fails("get", "s.txt")
    assert (tmp_path / "s.txt").read_bytes() == b"precious"
    cli("get", "--force", "s.txt").ok()
    assert (tmp_path / "s.txt").read_bytes() == b"from stdin\n"


def test_file_write_replaces_atomically_and_into_directories(
    cli: Cli, home: str, tmp_path: Path
) -> None:
    (tmp_path / "v.txt").write_bytes(b"one")
    cli("put", "v.txt").ok()
    (tmp_path / "v.txt").write_bytes(b"two, longer")
    assert "-f/--force" in cli.fails("put", "v.txt")  # as cp and mv: no silent replacing
    assert cli("get", "v.txt", "-").ok().raw == b"one"
    cli("put", "-f", "v.txt").ok()
    assert cli("get", "v.txt", "-").ok().raw == b"two, longer"
    cli("mkdir", "sub").ok()
    cli("put", "v.txt", "sub").ok()  # an existing directory as the target: put into it
    assert cli("get", "sub/v.txt", "-").ok().raw == b"two, longer"
    assert "standard input" in cli.fails("put", "-")
    assert "--force" in cli.fails("put", "-", "v.txt", input=b"three")
    cli("put", "--force", "-", "v.txt", input=b"three").ok()
    assert cli("get", "v.txt", "-").ok().raw == b"three"


def test_file_write_options(cli: Cli, home: str, tmp_path: Path) -> None:
    (tmp_path / "r1").write_bytes(os.urandom(100_000))
    cli("put", "--replication", "1", "-b", "16K", "r1").ok()
    info = json.loads(cli("--json", "stat", "r1").ok().out)
    assert info["replication"] == 1 and info["block_size"] == 16384
    assert len(info["blocks"]) == 7 and all(len(b["nodes"]) == 1 for b in info["blocks"])
    assert "replication" in cli.fails("put", "--replication", "0", "r1", "r0")
    assert "--replication 3" in cli.fails("put", "-r", "3", "r1")  # -r is recursive now


def test_file_copy_shares_no_client_bytes_and_picks_free_names(cli: Cli, home: str) -> None:
    cli("put", "-", "doc.txt", input=b"content").ok()
    assert cli("cp", "doc.txt").ok().out.strip().endswith(f"{home}/doc (copy).txt")
    assert cli("cp", "doc.txt").ok().out.strip().endswith(f"{home}/doc (copy 2).txt")
    cli("mkdir", "d").ok()
    cli("cp", "doc.txt", "d").ok()
    assert cli("get", "d/doc.txt", "-").ok().raw == b"content"
    assert "already exists" in cli.fails("cp", "doc.txt", "d/doc.txt")
    cli("cp", "--force", "doc (copy).txt", "d/doc.txt").ok()
    # Deleting the original leaves the copies readable: blocks are shared, not moved.
    cli("rm", "doc.txt").ok()
    assert cli("get", "doc (copy 2).txt", "-").ok().raw == b"content"


def test_file_move_renames_moves_into_dirs_and_moves_dirs(cli: Cli, home: str) -> None:
    cli("put", "-", "f.txt", input=b"x").ok()
    cli("mv", "f.txt", "g.txt").ok()
    cli("mkdir", "d").ok()
    cli("mv", "g.txt", "d").ok()
    assert cli("get", "d/g.txt", "-").ok().raw == b"x"
    cli("mv", "d", "e").ok()  # a directory moves with its contents
    assert cli("get", "e/g.txt", "-").ok().raw == b"x"
    assert "into itself" in cli.fails("mv", "e", "e/inner")
    cli("touch", "h.txt").ok()
    assert "already exists" in cli.fails("mv", "h.txt", "e/g.txt")
    cli("mv", "--force", "h.txt", "e/g.txt").ok()
    assert cli("get", "e/g.txt", "-").ok().raw == b""


def test_open_directory_persists_and_understands_dots(cli: Cli, home: str) -> None:
    cli("mkdir", "-p", "x/y").ok()
    assert cli("cd", "x/y").ok().out.strip() == f"{home}/x/y"
    assert cli("pwd").ok().out.strip() == f"{home}/x/y"  # kept across invocations
    assert cli("cd", "..").ok().out.strip() == f"{home}/x"
    assert cli("cd", "...").ok().out.strip() == home  # the seed's spelling of ".."
    assert cli("cd", "/").ok().out.strip() == "/"
    assert cli("cd", "../../..").ok().out.strip() == "/"  # never above the root
    cli("touch", f"{home}/file").ok()
    assert "not a directory" in cli.fails("cd", f"{home}/file")
    assert "no such" in cli.fails("cd", f"{home}/missing")
    assert cli("pwd").ok().out.strip() == "/"


def test_read_directory_lists_sorted_with_types(cli: Cli, home: str) -> None:
    cli("mkdir", "b-dir").ok()
    cli("put", "-", "c.txt", input=b"12345").ok()
    cli("touch", "a.txt").ok()
    entries = json.loads(cli("--json", "ls").ok().out)
    assert [(e["name"], e["type"], e["size"]) for e in entries] == [
        ("a.txt", "file", 0),
        ("b-dir", "dir", 0),
        ("c.txt", "file", 5),
    ]
    assert cli("ls").ok().out.splitlines() == ["a.txt", "b-dir/", "c.txt"]
    long = cli("ls", "-l").ok().out.splitlines()
    assert long[1].startswith("d") and long[1].endswith("b-dir/")
    assert long[2].startswith("-rw-") and " 5  " in long[2]


def test_make_directory_with_and_without_parents(cli: Cli, home: str) -> None:
    assert "no such directory" in cli.fails("mkdir", "p/q/r")
    cli("mkdir", "-p", "p/q/r").ok()
    cli("mkdir", "-p", "p/q/r").ok()  # idempotent with -p
    assert "already exists" in cli.fails("mkdir", "p")
    cli("touch", "file").ok()
    assert "not a directory" in cli.fails("mkdir", "-p", "file/sub")


def test_delete_directory_empty_nonempty_and_yes(cli: Cli, home: str) -> None:
    cli("mkdir", "empty").ok()
    cli("rmdir", "empty").ok()
    cli("mkdir", "full").ok()
    cli("put", "-", "full/f", input=b"keep me").ok()
    message = cli.fails("rmdir", "full")  # no terminal, no --yes: refuse
    assert "not empty" in message and "--yes" in message
    assert cli("get", "full/f", "-").ok().raw == b"keep me"
    assert "not a directory" in cli.fails("rmdir", "full/f")
    assert "is a directory" in cli.fails("rm", "full")
    cli("rmdir", "--yes", "full").ok()
    assert "no such" in cli.fails("ls", "full")


def test_delete_directory_prompt_on_a_terminal(cli: Cli, home: str) -> None:
    cli("mkdir", "asked").ok()
    cli("put", "-", "asked/inside.txt", input=b"1").ok()
    no = cli.with_tty("rmdir", "asked", answer="n")
    assert no.code != 0 and "inside.txt" in no.err  # it showed what the directory holds
    assert cli("get", "asked/inside.txt", "-").ok().raw == b"1"
    yes = cli.with_tty("rmdir", "asked", answer="y")
    assert yes.code == 0, yes.err
    assert "no such" in cli.fails("stat", "asked")


def test_json_output_for_every_command(cli: Cli, home: str, tmp_path: Path) -> None:
    (tmp_path / "j").write_bytes(b"json")

    def j(*args: str) -> object:
        return json.loads(cli("--json", *args).ok().out)

    assert j("mkdir", "jd")["type"] == "dir"  # type: ignore[index]
    assert j("touch", "jd/t")["type"] == "file"  # type: ignore[index]
    assert j("put", "j")["size"] == 4  # type: ignore[index]
    assert j("get", "j", "j2")["size"] == 4  # type: ignore[index]
    assert j("stat", "j")["blocks"]  # type: ignore[index]
    assert j("cp", "j", "jc")["path"] == f"{home}/jc"  # type: ignore[index]
    assert j("mv", "jc", "jm")["path"] == f"{home}/jm"  # type: ignore[index]
    assert isinstance(j("ls"), list)
    assert j("rm", "jm") == {"deleted": f"{home}/jm"}
    assert j("rmdir", "--yes", "jd") == {"deleted": f"{home}/jd"}
    assert j("cd", ".") == {"cwd": home}
    assert j("pwd") == {"cwd": home}


def test_error_messages(cli: Cli, home: str) -> None:
    assert "no such file" in cli.fails("get", "nothing", "-")
    assert "is a directory" in cli.fails("get", home, "-")
    cli("touch", "plain").ok()
    assert "not a directory" in cli.fails("ls", "plain/below")
    assert "invalid name" in cli.fails("touch", "bad\x01name")
    assert "longer than 255" in cli.fails("touch", "n" * 300)
    assert "root" in cli.fails("rmdir", "--yes", "/")
    assert "no such file" in cli.fails("put", "/definitely/not/a/local/file").lower()
    unreachable = Cli("http://127.0.0.1:9", cli.home, cli.token)  # port 9: nothing listens
    assert "127.0.0.1:9" in unreachable.fails("ls", "/")
    nowhere = Cli("", cli.home, cli.token)
    assert "no name node configured" in nowhere.fails("ls", "/")


def test_initialize_asks_then_wipes_everything(cli: Cli, shared_cluster, tmp_path: Path) -> None:
    # Runs last in this module: it wipes the shared cluster.
    cli("mkdir", "-p", "/init/d").ok()
    cli("put", "-", "/init/d/f", input=os.urandom(3 * BLOCK_SIZE)).ok()
    assert block_files(shared_cluster)
    assert "--yes" in cli.fails("initialize")  # no terminal: refuse
    no = cli.with_tty("format", answer="n")
    assert no.code != 0
    assert cli("get", "/init/d/f", "/dev/null", "--force").code == 0
    yes = cli.with_tty("initialize", answer="yes")
    assert yes.code == 0, yes.err
    assert "raw free" in yes.out and "usable at replication 2" in yes.out
    # What a fresh file system holds: /tmp and the users' homes.
    assert [e["name"] for e in json.loads(cli("--json", "ls", "/").ok().out)] == ["tmp", "user"]
    reply = json.loads(cli("--json", "format", "--yes").ok().out)
    assert reply["space"]["live_nodes"] == 2 and reply["space"]["raw_free"] > 0
    shared_cluster.wait_until(lambda: not block_files(shared_cluster), 15, "blocks freed")
