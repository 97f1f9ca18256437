"""Names against a real cluster: what recursive operations reveal, the reserved system identity,
hostile spellings of names (C1 controls, NFD, lone surrogates, a trailing '/'), and the modes of
the name node's files on disk."""

from __future__ import annotations

import json
import os
import stat
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pydfs import Client
from pydfs.cluster import LocalCluster
from pydfs.errors import InvalidArgument, InvalidPath, NotADirectory
from tests.conftest import Cli, make_cluster
from tests.integration.test_security import bearer, http


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with make_cluster(tmp_path_factory.mktemp("names"), 1) as c:
        yield c


@pytest.fixture(scope="module")
def tokens(cluster: LocalCluster) -> dict[str, str]:
    with cluster.client() as admin:
        return {name: admin.add_user(name) for name in ("alice", "bob")}


@pytest.fixture
def as_cli(cluster: LocalCluster, tmp_path: Path) -> Callable[[str], Cli]:
    return lambda token: Cli(cluster.url, tmp_path, token)


@pytest.fixture
def cli(cluster: LocalCluster, tmp_path: Path) -> Cli:
    """The admin's CLI, on this module's cluster."""
    return Cli(cluster.url, tmp_path, cluster.admin_token)


# --- recursive operations stop where the caller may not look ----------------------------


@pytest.fixture(scope="module")
def hidden(cluster: LocalCluster, tokens: dict[str, str]) -> list[str]:
    """alice's names that bob must never hear of. Her home is 0755, so bob sees "private" in
    it, but not what is inside. In /tmp/shared (bob's, 0777), alice's 0700 "hidden" holds
    "inner", made before "hidden" and moved in, so that it comes first in the table."""
    with Client(cluster.url, token=tokens["alice"]) as alice:
        alice.chmod("/user/alice", 0o755)
        alice.mkdir("/user/alice/private")
        alice.chmod("/user/alice/private", 0o700)
        alice.write_bytes("/user/alice/private/secret.txt", b"s")
        alice.mkdir("/tmp/alice-inner")
        alice.write_bytes("/tmp/alice-inner/deep.txt", b"d")
    with Client(cluster.url, token=tokens["bob"]) as bob:
        bob.mkdir("/tmp/shared")
        bob.chmod("/tmp/shared", 0o777)
        bob.write_bytes("/tmp/shared/bobs.txt", b"b")
    with Client(cluster.url, token=tokens["alice"]) as alice:
        alice.mkdir("/tmp/shared/hidden")
        alice.move("/tmp/alice-inner", "/tmp/shared/hidden/inner")
        alice.chmod("/tmp/shared/hidden", 0o700)
    return ["secret.txt", "inner", "deep.txt"]


def test_recursive_refusals_name_nothing_the_caller_cannot_list(
    cluster: LocalCluster,
    tokens: dict[str, str],
    hidden: list[str],
    as_cli: Callable[[str], Cli],
) -> None:
    bob = as_cli(tokens["bob"])
    refusals = {
        "setrep 1 /user/alice": bob.fails("setrep", "1", "/user/alice"),
        "setrep 1 /": bob.fails("setrep", "1", "/"),
        "rmdir --yes /tmp/shared": bob.fails("rmdir", "--yes", "/tmp/shared"),
        "chmod -R 700 /tmp/shared": bob.fails("chmod", "-R", "700", "/tmp/shared"),
        "chown -R :bob /tmp/shared": bob.fails("chown", "-R", ":bob", "/tmp/shared"),
    }
    for command, line in refusals.items():
        assert "permission denied" in line or "only the owner" in line, (command, line)
        for name in hidden:
            assert name not in line, (command, line)
    # Each names the directory it could not enter, a name bob can list.
    assert "/user/alice/private" in refusals["setrep 1 /user/alice"]
    assert "/tmp/shared/hidden" in refusals["rmdir --yes /tmp/shared"]
    assert "/tmp/shared/hidden" in refusals["chmod -R 700 /tmp/shared"]
    # A refusal changes nothing.
    with cluster.client() as admin:
        assert admin.exists("/tmp/shared/bobs.txt")
        assert admin.info("/tmp/shared").mode == 0o777
        assert admin.exists("/tmp/shared/hidden/inner/deep.txt")


def test_recursive_operations_still_cover_what_the_caller_may(
    cluster: LocalCluster, tokens: dict[str, str], as_cli: Callable[[str], Cli]
) -> None:
    with Client(cluster.url, token=tokens["bob"]) as bob:
        bob.mkdir("/user/bob/tree/locked", parents=True)
        bob.write_bytes("/user/bob/tree/locked/f", b"x")
        bob.chmod("/user/bob/tree/locked", 0o000)  # his own: chmod -R may still go in
    cli = as_cli(tokens["bob"])
    assert cli("chmod", "-R", "750", "/user/bob/tree").ok().code == 0
    with cluster.client() as admin:
        assert admin.info("/user/bob/tree/locked/f").mode == 0o750
    cli("setrep", "1", "/user/bob/tree").ok()
    cli("rmdir", "--yes", "/user/bob/tree").ok()
    with cluster.client() as admin:
        assert not admin.exists("/user/bob/tree")


# --- the system's identity is no user's -------------------------------------------------


def test_reserved_names_cannot_be_users_or_groups(cluster: LocalCluster, cli: Cli) -> None:
    line = cli.fails("admin", "user", "add", "root")
    assert "reserved" in line, line
    with cluster.client() as admin:
        for name in ("datanode", "anonymous"):
            with pytest.raises(InvalidArgument, match="reserved"):
                admin.add_user(name)
        with pytest.raises(InvalidArgument, match="reserved"):
            admin.add_user("eve", groups=["root"])
        with pytest.raises(InvalidArgument):
            admin.add_user("\u0430dmin")  # U+0430, Cyrillic: it looks like admin
        names = {u.name for u in admin.users()}
        assert not names & {"root", "datanode", "anonymous", "eve", "\u0430dmin"}
        for path in ("/", "/user", "/tmp"):
            assert admin.info(path).owner == "root"


# --- hostile spellings of names ---------------------------------------------------------


def test_c1_control_characters_are_refused(cluster: LocalCluster, cli: Cli) -> None:
    for name in ("/a\u009bb", "/a\u0085b", "/a\u009fb"):
        assert "control character" in cli.fails("mkdir", name)
        assert "control character" in cli.fails("put", "-", name, input=b"x")
    with cluster.client() as admin:
        assert not [e for e in admin.ls("/") if any(0x80 <= ord(c) <= 0x9F for c in e.name)]


def test_nfc_and_nfd_spellings_name_one_entry(cluster: LocalCluster, cli: Cli) -> None:
    nfc, nfd = "/tmp/caf\u00e9", "/tmp/cafe\u0301"
    assert unicodedata.normalize("NFC", nfd) == nfc
    cli("put", "-", nfc, input=b"precomposed").ok()
    assert "already exists" in cli.fails("touch", nfd)
    cli("put", "-f", "-", nfd, input=b"combining").ok()
    with cluster.client() as admin:
        names = [e.name for e in admin.ls("/tmp") if e.name.startswith("caf")]
        assert names == ["caf\u00e9"]
        assert admin.read_bytes(nfc) == b"combining"
        admin.mkdir("/tmp/cafe\u0301-dir")
        assert admin.info("/tmp/caf\u00e9-dir").name == "caf\u00e9-dir"


def test_a_lone_surrogate_is_an_invalid_path(cluster: LocalCluster, cli: Cli) -> None:
    headers = {"Content-Type": "application/json", **bearer(cluster.admin_token)}
    for path in ("/a\ud800", "/a\udcffb", "/\ud800/x"):
        body = json.dumps({"path": path}).encode()  # escapes it: "\ud800"
        status, reply = http("POST", f"{cluster.url}/v1/fs/mkdir", body, headers)
        assert status == 400, reply
        assert isinstance(reply, dict) and reply["code"] == "invalid_path", reply
        assert "surrogate" in reply["message"]
    with cluster.client() as admin:
        for call in (
            lambda: admin.mkdir("/a\udcff"),
            lambda: admin.write_bytes("/a\ud800", b"x"),
            lambda: admin.touch("/t\udcff"),
        ):
            with pytest.raises(InvalidPath):
                call()
    # From a shell, undecodable bytes reach the CLI as surrogates (surrogateescape).
    r = cli("mkdir", os.fsdecode(b"/x\xed\xa0\x80"))
    assert r.code != 0 and "not valid UTF-8" in r.err and "Traceback" not in r.err


NUL = "\u0000"
# Every body field and route parameter that reaches the metadata store, holding NUL: PostgreSQL
# cannot store or compare such text (its driver fails the statement: a 500), SQLite can.
NUL_CALLS: list[tuple[bool, str, str, dict[str, Any] | None]] = [  # (admin?, method, route, body)
    (
        False,
        "POST",
        "/uploads/commit-many",
        {"commits": [{"upload_id": NUL, "commit": {"blocks": []}}]},
    ),
    (False, "POST", "/uploads/%00/commit", {"blocks": []}),
    (False, "POST", "/uploads/%00/blocks", {}),
    (False, "POST", "/uploads/%00/renew", None),
    (False, "DELETE", "/uploads/%00", None),
    (False, "POST", "/blocks/corrupt", {"block": NUL, "node": "dn"}),
    (False, "POST", "/blocks/corrupt", {"block": "b", "node": f"dn{NUL}"}),
    (True, "POST", "/fs/chown", {"path": "/tmp", "owner": NUL}),
    (True, "POST", "/fs/chown", {"path": "/tmp", "group": f"g{NUL}"}),
    (True, "POST", "/users/remove", {"name": NUL}),
    (True, "POST", "/users/reset-token", {"name": NUL}),
]


@pytest.mark.parametrize("admin, method, route, body", NUL_CALLS)
def test_a_nul_character_is_refused_on_every_store(
    cluster: LocalCluster,
    tokens: dict[str, str],
    admin: bool,
    method: str,
    route: str,
    body: dict[str, Any] | None,
) -> None:
    token = cluster.admin_token if admin else tokens["alice"]
    headers = {"Content-Type": "application/json", **bearer(token)}
    data = None if body is None else json.dumps(body).encode()
    status, reply = http(method, f"{cluster.url}/v1{route}", data, headers)
    assert status == 400, reply
    assert isinstance(reply, dict) and reply["code"] == "protocol_error", reply
    assert "NUL" in reply["message"]
    with cluster.client() as fs:
        assert fs.info("/tmp").owner == "root"


def test_text_that_spells_an_escape_is_no_nul(cluster: LocalCluster) -> None:
    """A backslash and "u0000", as text, is six characters like any others."""
    with cluster.client() as admin:
        admin.symlink("/tmp/escape-link", "\\u0000")
        assert admin.info("/tmp/escape-link").target == "\\u0000"


def test_a_trailing_slash_names_a_directory(
    cluster: LocalCluster, cli: Cli, tmp_path: Path
) -> None:
    local = tmp_path / "f.txt"
    local.write_bytes(b"content")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom((1 << 20) + 1))  # past the batch leases: its own upload
    cli("mkdir", "/tmp/dir").ok()
    cli("touch", "/tmp/afile").ok()
    for args in (
        ("touch", "/tmp/dir/name/"),
        ("touch", "/tmp/afile/"),
        ("put", str(local), "/tmp/nodir/"),
        ("put", str(big), "/tmp/nodir/"),
        ("put", "-", "/tmp/nodir/"),
        ("put", str(local), "/tmp/afile/"),
    ):
        line = cli.fails(*args, input=b"x" if "-" in args else None)
        assert "not a directory" in line, (args, line)
    with cluster.client() as admin:
        assert not admin.exists("/tmp/dir/name")
        assert not admin.exists("/tmp/nodir")
        assert admin.info("/tmp/afile").size == 0
        with pytest.raises(NotADirectory):
            admin.write_bytes("/tmp/nodir/", b"small: from a batch lease")
        with pytest.raises(NotADirectory):
            admin.touch("/tmp/nodir/.")
        assert not admin.exists("/tmp/nodir")
    # Into an existing directory, as before.
    cli("put", str(local), "/tmp/dir/").ok()
    with cluster.client() as admin:
        assert admin.read_bytes("/tmp/dir/f.txt") == b"content"
        assert [e.name for e in admin.ls("/tmp/dir")] == ["f.txt"]


# --- the name node's files on disk ------------------------------------------------------


def _modes(data_dir: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(data_dir.stat().st_mode)}
    for name in ("namespace.sqlite3", "namespace.sqlite3-wal", "namespace.sqlite3-shm"):
        found[name] = stat.S_IMODE((data_dir / name).stat().st_mode)
    return found


PRIVATE = {
    ".": 0o700,
    "namespace.sqlite3": 0o600,
    "namespace.sqlite3-wal": 0o600,
    "namespace.sqlite3-shm": 0o600,
}


@pytest.mark.sqlite_only("the modes of namespace.sqlite3 and its WAL files")
def test_name_node_files_are_private(cluster: LocalCluster) -> None:
    assert _modes(cluster.namenode.data_dir) == PRIVATE


@pytest.mark.sqlite_only("the modes of namespace.sqlite3 and its WAL files")
def test_an_old_data_directory_is_tightened_at_start(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    c = cluster_factory(1)
    data_dir = c.namenode.data_dir
    c.namenode.stop()
    data_dir.chmod(0o755)
    for name in PRIVATE:
        if name != ".":
            (data_dir / name).touch()
            (data_dir / name).chmod(0o644)
    c.restart_namenode()
    assert _modes(data_dir) == PRIVATE
