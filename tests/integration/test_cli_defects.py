"""The CLI as a new user meets it: global options anywhere, errors a script can act on, a second
user's first steps, prompts that Ctrl-C stops, and health a script can test."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from pydfs.cluster import LocalCluster
from tests.conftest import Cli


@pytest.fixture
def home(cli: Cli, request: pytest.FixtureRequest) -> str:
    path = f"/d/{request.node.name}"
    cli("mkdir", "-p", path).ok()
    cli("cd", path).ok()
    return path


def test_global_options_go_before_or_after_the_command(cli: Cli, home: str) -> None:
    cli("touch", "f").ok()
    for line in (["ls", "--json"], ["--json", "ls"], ["ls", "-l", "--json", "."]):
        assert [e["name"] for e in json.loads(cli(*line).ok().out)] == ["f"]
    assert json.loads(cli("stat", "f", "--json").ok().out)["path"] == f"{home}/f"
    assert cli("touch", "g", "-q").ok().out == ""
    other = Cli("http://127.0.0.1:9", cli.home, cli.token)  # the env's name node is wrong...
    told = other("stat", "f", "--namenode", cli.namenode, "--json").ok()  # ...the option wins
    assert json.loads(told.out)["size"] == 0


def test_the_login_line_printed_for_a_new_user_works(
    cli: Cli, shared_cluster: LocalCluster, tmp_path: Path
) -> None:
    added = cli("admin", "user", "add", "newcomer").ok().out
    token = added.split("token (shown once): ")[1].split()[0]
    line = added.strip().splitlines()[-1]
    assert line == f"they run: pydfs login --namenode {shared_cluster.url}"
    fresh = Cli("", tmp_path / "newcomer", "")  # no name node, no token in its environment
    fresh.home.mkdir()
    login = fresh(*line.removeprefix("they run: pydfs ").split(), input=token.encode() + b"\n")
    assert "logged in" in login.ok().out
    assert fresh("pwd").ok().out.strip() == "/user/newcomer"
    assert json.loads(fresh("whoami", "--json").ok().out)["name"] == "newcomer"


def test_cd_checks_permission_goes_home_and_back(cli: Cli, shared_cluster: LocalCluster) -> None:
    with shared_cluster.client() as admin:
        token = admin.add_user("plain")
    plain = Cli(shared_cluster.url, cli.home / "plain", token)
    plain.home.mkdir()
    assert "/user/admin: permission denied" in plain.fails("cd", "/user/admin")
    assert plain("pwd").ok().out.strip() == "/"  # it stayed where it was
    assert plain("cd", "/tmp").ok().out.strip() == "/tmp"
    assert plain("cd").ok().out.strip() == "/user/plain"  # bare cd: home
    assert plain("cd", "-").ok().out.strip() == "/tmp"  # cd -: back
    assert plain("cd", "-").ok().out.strip() == "/user/plain"


def test_errors_as_json_with_an_exit_code_per_kind(cli: Cli, home: str) -> None:
    cli("touch", "here").ok()
    for args, code, exit_code in [
        (["stat", "missing"], "not_found", 3),
        (["touch", "here"], "already_exists", 4),
        (["mkdir", "here/sub"], "not_a_directory", 7),
        (["ls", "--no-such-flag"], "usage", 2),
        (["lss"], "usage", 2),
    ]:
        r = cli("--json", *args)
        assert r.code == exit_code, r.err
        error = json.loads(r.err)
        assert (error["error"], error["exit"]) == (code, exit_code) and error["message"]
        assert r.out == ""
        assert cli(*args).code == exit_code  # the same code without --json


def test_usage_errors_are_one_line_and_typos_get_a_suggestion(cli: Cli) -> None:
    said = cli.fails("lss")
    assert said == "pydfs: unknown command 'lss'; did you mean `ls`? (see `pydfs --help`)"
    line = cli.fails("mv", "/only-one")  # named as typed, not by its canonical name
    assert line.startswith("pydfs mv: ") and "pydfs mv --help" in line
    assert cli.fails("stat").startswith("pydfs stat: ")
    assert cli.fails("file_info").startswith("pydfs file_info: ")
    assert cli("stat", "--help").ok().out.startswith("usage: pydfs stat ")


def test_a_closed_pipe_ends_quietly(cli: Cli, home: str) -> None:
    cli("put", "-", "big", input=os.urandom(3 << 20)).ok()
    for command in ("get big -", "cat big"):
        pipe = subprocess.run(
            f"{sys.executable} -m pydfs {command} | head -c 10 >/dev/null; "
            'echo "${PIPESTATUS[0]}"',
            shell=True,
            executable="/bin/bash",
            env=cli.env,
            cwd=cli.home,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert pipe.stderr == "" and pipe.stdout.strip() == "141"


def test_a_download_into_a_missing_directory_names_it(cli: Cli, home: str) -> None:
    cli("touch", "f").ok()
    line = cli.fails("get", "f", "no/such/dir/f")
    assert line == "pydfs: error: no/such/dir: no such directory"
    assert not any(cli.home.rglob("*.pydfs-part"))


def test_setrep_beyond_the_data_nodes_warns_and_fsck_fails(cli: Cli, home: str) -> None:
    cli("put", "-", "r", input=b"replicate me").ok()
    r = cli("setrep", "3", "r").ok()
    assert "2 live data node(s)" in r.err and "under-replicated" in r.err
    assert "warning" in json.loads(cli("--json", "setrep", "3", "r").ok().out)
    degraded = cli("fsck", home)
    assert degraded.code == 1 and "DEGRADED" in degraded.out
    assert json.loads(cli("--json", "fsck", home).err or "{}") == {}  # a status, not an error
    cli("setrep", "2", "r").ok()
    assert "2 live" not in cli("setrep", "2", "r").ok().err
    deadline = time.monotonic() + 30
    while cli("fsck", home).code != 0:
        assert time.monotonic() < deadline, cli("fsck", home).out
        time.sleep(0.2)


def test_fsck_lists_files_sorted_and_counts_in_words(cli: Cli, home: str) -> None:
    for name in ("b", "c", "a"):
        cli("put", "-", name, input=b"x").ok()
    out = cli("fsck", "--files", home).ok().out
    listed = [line.split()[1] for line in out.splitlines() if line.startswith("OK")]
    assert listed == [f"{home}/a", f"{home}/b", f"{home}/c"]
    assert f"{home}: 3 files, 3 blocks" in out and "(1 block:" in out
    one = cli("fsck", f"{home}/a").ok().out
    assert "1 file, 1 block\n" in one


# --- Ctrl-C on a terminal ------------------------------------------------------------------


def _on_terminal(cli: Cli, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """The CLI with a pseudo-terminal as its controlling terminal, so that ^C typed there
    reaches it as SIGINT, as from a shell."""
    master, slave = pty.openpty()

    def own_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [sys.executable, "-m", "pydfs", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=cli.env,
        cwd=cli.home,
        preexec_fn=own_terminal,
    )
    os.close(slave)
    return proc, master


def _read_until(master: int, wanted: bytes, proc: subprocess.Popen[bytes]) -> bytes:
    seen = b""
    deadline = time.monotonic() + 30
    while wanted not in seen:
        assert time.monotonic() < deadline and proc.poll() is None, seen
        if select.select([master], [], [], 0.2)[0]:
            seen += os.read(master, 4096)
    return seen


def _exit_after_ctrl_c(proc: subprocess.Popen[bytes], master: int) -> int:
    os.write(master, b"\x03")  # the terminal's interrupt character
    try:
        return proc.wait(10)  # at once: no second ^C, no line typed
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_ctrl_c_at_a_yes_no_prompt_exits_at_once(cli: Cli, home: str) -> None:
    cli("mkdir", "full").ok()
    cli("put", "-", "full/inside", input=b"keep").ok()
    proc, master = _on_terminal(cli, "rmdir", "full")
    _read_until(master, b"[y/N]", proc)
    assert _exit_after_ctrl_c(proc, master) == 130
    assert cli("get", "full/inside", "-").ok().raw == b"keep"


def test_ctrl_c_while_reading_a_terminal_exits_at_once(cli: Cli, home: str) -> None:
    proc, master = _on_terminal(cli, "put", "-", f"{home}/typed")
    os.write(master, b"a first line\n")
    deadline = time.monotonic() + 30  # the upload is open: the command now reads the terminal
    while not json.loads(cli("--json", "admin", "uploads").ok().out)["uploads"]:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    assert _exit_after_ctrl_c(proc, master) == 130
    assert cli("test", "-e", "typed").code == 1  # nothing was committed


def test_one_ctrl_d_after_a_line_ends_put_from_a_terminal(cli: Cli, home: str) -> None:
    proc, master = _on_terminal(cli, "put", "-", f"{home}/typed")
    try:
        os.write(master, b"a line\n\x04")  # the terminal's end of input, once
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        os.close(master)
    assert cli("cat", "typed").ok().raw == b"a line\n"


def test_sigint_stops_put_reading_a_pipe_at_once(cli: Cli, home: str) -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "pydfs", "put", "-", f"{home}/piped"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli.env,
    ) as proc:
        assert proc.stdin is not None
        proc.stdin.write(b"the producer then says nothing for a while")
        proc.stdin.flush()
        _wait_for_upload(cli, f"{home}/piped", proc)  # it now waits on the pipe
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(10) == 130  # without waiting for the producer
        finally:
            proc.kill()
    assert cli("test", "-e", "piped").code == 1  # nothing was committed


def _wait_for_upload(cli: Cli, path: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while path not in [
        u["path"] for u in json.loads(cli("--json", "admin", "uploads").out)["uploads"]
    ]:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)


def test_https_against_a_plain_name_node_fails_clearly(cli: Cli) -> None:
    https = Cli(cli.namenode.replace("http://", "https://"), cli.home, cli.token)
    line = https.fails("ls", "/")  # within the subprocess timeout, not after a hang
    assert "TLS with https://" in line
