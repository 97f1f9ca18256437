"""``pydfs ln -s`` and how ``ls -l``, ``stat``, ``cp``, ``mv`` and ``rm`` treat a link."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Cli


@pytest.fixture
def home(cli: Cli, request: pytest.FixtureRequest) -> str:
    path = f"/v/{request.node.name}"
    cli("mkdir", "-p", path).ok()
    cli("cd", path).ok()
    return path


def test_ln_s_ls_l_stat_and_the_link_verbs(cli: Cli, home: str) -> None:
    cli("put", "-", "f", input=b"12345").ok()
    made = json.loads(cli("--json", "ln", "-s", "f", "rel").ok().out)
    assert (made["type"], made["target"], made["path"]) == ("symlink", "f", f"{home}/rel")
    cli("ln", "-s", "../nowhere", "dangling").ok()
    long = cli("ls", "-l").ok().out.splitlines()
    assert long[0].startswith("lrwxrwxrwx  admin") and long[0].endswith(" dangling -> ../nowhere")
    assert long[1].startswith("-rw-r--r--") and long[1].endswith(" f")
    assert long[2].startswith("lrwxrwxrwx") and long[2].endswith(" rel -> f")
    shown = cli("stat", "rel").ok().out
    assert "symbolic link" in shown and "target:      f" in shown
    cli("cp", "rel", "copy").ok()
    cli("mv", "dangling", "moved").ok()
    listed = {e["name"]: e["target"] for e in json.loads(cli("--json", "ls").ok().out)}
    assert listed == {"copy": "f", "f": None, "moved": "../nowhere", "rel": "f"}
    cli("rm", "rel", "copy", "moved").ok()
    assert cli("ls").ok().out.split() == ["f"]
    assert cli("get", "f", "-").ok().raw == b"12345"  # removing links left what they named


def test_ln_refusals_are_one_line(cli: Cli, home: str) -> None:
    cli("ln", "-s", "t", "l").ok()
    assert "already exists" in cli.fails("ln", "-s", "t", "l")
    assert "symbolic" in cli.fails("ln", "t", "hard")
    assert "target" in cli.fails("ln", "-s", "", "empty")
    assert "symbolic link" in cli.fails("put", "-", "l", input=b"x")
    assert "does not follow links" in cli.fails("cat", "l")
    assert "does not follow links" in cli.fails("checksum", "l")
    cli("mkdir", "d").ok()
    cli("put", "-", "d/f", input=b"abc").ok()
    cli("ln", "-s", "f", "d/l").ok()
    out = cli.home / "out"
    cli("get", "-r", "d", str(out)).ok()  # links are left out, not read as empty files
    assert sorted(p.name for p in out.iterdir()) == ["f"]
