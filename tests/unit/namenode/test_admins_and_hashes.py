"""The last admin stays and can be recovered; a file's SHA-256 is recorded at commit, checked
for form, kept by a copy and dropped by a rewrite without one."""

import stat
from pathlib import Path

import pytest
from tests.unit.namenode.parts import Blocking
from tests.unit.namenode.test_uploads import ALICE, live, make_uploads, stored

from pydfs import wire
from pydfs.errors import Conflict, PermissionDenied, ProtocolError
from pydfs.namenode.auth import TOKEN_FILE, Users

MiB = 1024 * 1024
SHA = "ab" * 32


def test_the_last_admin_cannot_be_removed(tmp_path: Path, open_store, loop) -> None:
    store = open_store()
    try:
        users = Blocking(Users(store), loop)
        users.bootstrap(tmp_path / TOKEN_FILE)
        users.add("plain", admin=False, groups=[])
        with pytest.raises(Conflict, match="last administrator"):
            users.remove("admin")
        users.add("second", admin=True, groups=[])
        users.remove("admin")
        users.remove("plain")  # plain users go as before
        with pytest.raises(Conflict, match="last administrator"):
            users.remove("second")
    finally:
        store.close()


@pytest.mark.parametrize("gone", ["token", "user"])
def test_reset_admin_gives_the_admin_a_new_token(
    tmp_path: Path, gone: str, open_store, loop
) -> None:
    store = open_store()
    try:
        users = Blocking(Users(store), loop)
        old = users.bootstrap(tmp_path / TOKEN_FILE)
        assert old is not None
        users.add("other", admin=True, groups=[])
        if gone == "user":
            users.remove("admin")
        else:
            users.reset_token("admin")
        users.reset_admin(tmp_path / TOKEN_FILE)
        token = (tmp_path / TOKEN_FILE).read_text().strip()
        assert token != old and Blocking(Users(store), loop).authenticate(token).admin
        assert stat.S_IMODE((tmp_path / TOKEN_FILE).stat().st_mode) == 0o600
        assert Blocking(Users(store), loop).get("other").admin  # others are untouched
    finally:
        store.close()


@pytest.fixture
def uploads(ns):
    live(ns, "n1", "n2")
    return make_uploads(ns, ns.membership, lease=60)


def _write(uploads, path: str, sha256: str | None) -> wire.FileStatus:
    grant = uploads.start(wire.UploadRequest(path, replication=2, block_size=MiB), ALICE)
    return uploads.commit(
        grant.upload_id, wire.CommitRequest([stored(grant.block)], sha256=sha256), ALICE
    )


def test_the_writers_hash_is_recorded_and_copied(uploads, ns) -> None:
    _write(uploads, "/f", SHA)
    assert ns.checksum("/f", ALICE) == wire.FileChecksum("/f", "file", 100, SHA)
    ns.copy("/f", "/g", ALICE)
    assert ns.checksum("/g").sha256 == SHA
    _write(uploads, "/f", None)  # a rewrite without one forgets the old content's
    assert ns.checksum("/f").sha256 is None and ns.checksum("/g").sha256 == SHA
    ns.mkdir("/d")
    assert ns.checksum("/d").type == "dir"


@pytest.mark.parametrize("bad", ["AB" * 32, "ab" * 31, "zz" * 32, "ab" * 32 + "\n"])
def test_a_malformed_hash_is_refused(uploads, ns, bad: str) -> None:
    with pytest.raises(ProtocolError):
        _write(uploads, "/f", bad)
    assert ns.lookup("/f") is None


def test_the_hash_needs_read_permission(uploads, ns) -> None:
    from pydfs.namenode.auth import User

    _write(uploads, "/f", SHA)
    ns.chmod("/f", 0o600)
    with pytest.raises(PermissionDenied):
        ns.checksum("/f", User("bob"))
