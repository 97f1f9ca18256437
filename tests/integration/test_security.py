"""Security: every refusal the threat model promises, against a real cluster.

Users and tokens (none, wrong, revoked), POSIX permissions between two users, admin-only
operations, block access tokens on data nodes (none, forged, expired, another block's, the wrong
mode), the node credential, and hostile paths through the CLI and the raw HTTP API.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pydfs import Client, checksum, tokens, wire
from pydfs.cluster import LocalCluster, NodeProcess
from pydfs.errors import PermissionDenied, Unauthenticated
from pydfs.local_postgres import binaries
from tests.conftest import BLOCK_SIZE, Cli, make_cluster, node_id
from tests.integration.test_metrics import scrape, value


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with make_cluster(tmp_path_factory.mktemp("secure")) as c:
        yield c


@pytest.fixture(scope="module")
def users(cluster: LocalCluster) -> dict[str, str]:
    """Two plain users, alice and bob (in group "staff" together with carol), with tokens."""
    with cluster.client() as admin:
        return {
            name: admin.add_user(name, groups=["staff"] if name != "bob" else [])
            for name in ("alice", "bob", "carol")
        }


def as_user(cluster: LocalCluster, token: str) -> Client:
    return Client(cluster.url, token=token)


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any] | bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- authentication ---------------------------------------------------------------------


def test_every_api_call_needs_a_valid_token(cluster: LocalCluster, users: dict[str, str]) -> None:
    url = f"{cluster.url}/v1/fs/list?path=/"
    assert http("GET", url)[0] == 401
    status, body = http("GET", url, headers=bearer("pydfs_not-a-real-token"))
    assert status == 401 and isinstance(body, dict) and body["code"] == "unauthenticated"
    assert http("GET", url, headers={"Authorization": "Basic YWxpY2U6eA=="})[0] == 401
    assert http("GET", url, headers=bearer(users["alice"]))[0] == 200
    # The old trust-me header is gone: naming a user is not being one.
    assert http("GET", url, headers={"X-Pydfs-User": "admin"})[0] == 401
    assert http("GET", f"{cluster.url}/v1/health")[0] == 200  # liveness stays open


def test_cli_without_or_with_a_wrong_token_says_so_in_one_line(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    line = Cli(cluster.url, tmp_path, "").fails("ls", "/")
    assert "no token" in line and "pydfs login" in line
    line = Cli(cluster.url, tmp_path, "pydfs_wrong").fails("ls", "/")
    assert "invalid or revoked token" in line


def test_revoked_and_reset_tokens_stop_working(cluster: LocalCluster) -> None:
    with cluster.client() as admin:
        first = admin.add_user("dave")
        with as_user(cluster, first) as dave:
            assert dave.whoami().name == "dave"
        second = admin.reset_token("dave")
        with as_user(cluster, first) as dave, pytest.raises(Unauthenticated):
            dave.ls("/user/dave")
        with as_user(cluster, second) as dave:
            assert dave.ls("/user/dave") == []
        admin.remove_user("dave")
        with as_user(cluster, second) as dave, pytest.raises(Unauthenticated):
            dave.ls("/")
        assert "dave" not in [u.name for u in admin.users()]


def _metadata_bytes(cluster: LocalCluster) -> bytes:
    """Every byte of the cluster's metadata: its SQLite files, or a dump of its PostgreSQL."""
    if cluster.metadata is None:
        db = (cluster.namenode.data_dir / "namespace.sqlite3").read_bytes()
        return db + (cluster.namenode.data_dir / "namespace.sqlite3-wal").read_bytes()
    bin_dir = binaries()
    assert bin_dir is not None
    dump = [str(bin_dir / "pg_dump"), "--data-only", cluster.metadata]
    return subprocess.run(dump, capture_output=True, check=True).stdout


def test_tokens_are_kept_as_hashes_only(cluster: LocalCluster, users: dict[str, str]) -> None:
    db = _metadata_bytes(cluster)
    for token in users.values():
        assert token.encode() not in db
        assert tokens.hash_user_token(token).encode() in db


def test_secrets_on_disk_are_private(cluster: LocalCluster, tmp_path: Path) -> None:
    for name in ("cluster.secret", "admin.token"):
        mode = stat.S_IMODE((cluster.namenode.data_dir / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))


def test_login_saves_the_token_privately(
    cluster: LocalCluster, users: dict[str, str], tmp_path: Path
) -> None:
    cli = Cli(cluster.url, tmp_path, "")
    out = cli("login", input=(users["alice"] + "\n").encode()).ok().out
    assert "as alice" in out
    config = tmp_path / "client.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert users["alice"] in config.read_text()
    # Later commands need no token of their own, and start in the user's home.
    assert cli("whoami").ok().out.startswith("alice")
    assert cli("pwd").ok().out.strip() == "/user/alice"
    assert "invalid or revoked" in cli.fails("login", input=b"pydfs_bogus\n")


def test_only_admins_administer(cluster: LocalCluster, users: dict[str, str]) -> None:
    with as_user(cluster, users["alice"]) as alice:
        for call in (
            alice.format,
            lambda: alice.add_user("mallory", admin=True),
            lambda: alice.reset_token("bob"),
            alice.users,
            alice.fsck,
            lambda: alice.decommission("x"),
        ):
            with pytest.raises(PermissionDenied):
                call()
    with cluster.client() as admin:
        assert "mallory" not in [u.name for u in admin.users()]


def test_non_admin_initialize_through_the_cli(
    cluster: LocalCluster, users: dict[str, str], tmp_path: Path
) -> None:
    with cluster.client() as admin:
        admin.write_bytes("/tmp/survivor", b"still here")
    line = Cli(cluster.url, tmp_path, users["bob"]).fails("initialize", "--yes")
    assert "only an admin" in line
    with cluster.client() as admin:
        assert admin.read_bytes("/tmp/survivor") == b"still here"


# --- permissions ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private(cluster: LocalCluster, users: dict[str, str]) -> bytes:
    """alice's files: a private file in her home, a 0600 file and a 0644 one in shared /tmp."""
    data = os.urandom(2 * BLOCK_SIZE + 7)
    with as_user(cluster, users["alice"]) as alice:
        alice.mkdir("/user/alice/secret")
        alice.write_bytes("/user/alice/secret/plan.txt", data)
        alice.write_bytes("/tmp/alice-only", data)
        alice.chmod("/tmp/alice-only", 0o600)
        alice.write_bytes("/tmp/alice-shared", data)
    return data


def test_a_file_in_a_directory_its_writer_may_not_search_is_not_overwritten(
    cluster: LocalCluster, users: dict[str, str]
) -> None:
    """Writing a file reaches it through its directory, as a stat does: without x there, a
    file that others may write is out of reach, and whether a name is taken there is not told
    (POSIX asks search permission of every directory on the way, the last one included)."""
    with cluster.client() as admin:
        admin.mkdir("/tmp/closed")
        admin.write_bytes("/tmp/closed/f", b"kept")
        admin.chmod("/tmp/closed/f", 0o666)
        admin.chmod("/tmp/closed", 0o700)
        with as_user(cluster, users["bob"]) as bob:
            for attempt in (
                lambda: bob.info("/tmp/closed/f"),
                lambda: bob.write_bytes("/tmp/closed/f", b"bob's"),
                lambda: bob.write_bytes("/tmp/closed/f", b"bob's " * 300_000),  # a lease of its own
                # Nor does a name there tell bob whether it exists.
                lambda: bob.write_bytes("/tmp/closed/f", b"bob's", overwrite=False),
                lambda: bob.touch("/tmp/closed/f"),
                lambda: bob.symlink("/tmp/closed/f", "/elsewhere"),
            ):
                with pytest.raises(PermissionDenied):
                    attempt()
        assert admin.read_bytes("/tmp/closed/f") == b"kept"


def test_homes_are_private_by_default(cluster: LocalCluster, users: dict[str, str]) -> None:
    with cluster.client() as admin:
        home = admin.info("/user/alice")
    assert (home.owner, home.group, home.mode) == ("alice", "alice", 0o750)


def test_another_user_cannot_touch_a_private_file(
    cluster: LocalCluster, users: dict[str, str], private: bytes
) -> None:
    with as_user(cluster, users["bob"]) as bob:
        for call in (
            lambda: bob.ls("/user/alice"),
            lambda: bob.ls("/user/alice/secret"),
            lambda: bob.info("/user/alice/secret/plan.txt"),
            lambda: bob.read_bytes("/user/alice/secret/plan.txt"),
            lambda: bob.write_bytes("/user/alice/secret/plan.txt", b"mine now"),
            lambda: bob.write_bytes("/user/alice/new.txt", b"x"),
            lambda: bob.delete("/user/alice/secret/plan.txt"),
            lambda: bob.rmdir("/user/alice/secret", recursive=True),
            lambda: bob.move("/user/alice/secret/plan.txt", "/tmp/stolen"),
            lambda: bob.copy("/user/alice/secret/plan.txt", "/tmp/stolen"),
            lambda: bob.chmod("/user/alice", 0o777),
            lambda: bob.chown("/user/alice", "bob"),
            lambda: bob.mkdir("/user/alice/x"),
            lambda: bob.touch("/user/alice/x"),
            lambda: bob.setrep("/user/alice/secret/plan.txt", 1),
            # In sticky /tmp: a 0600 file is unreadable, and nobody else's to remove or rename.
            lambda: bob.read_bytes("/tmp/alice-only"),
            lambda: bob.delete("/tmp/alice-shared"),
            lambda: bob.move("/tmp/alice-shared", "/tmp/bobs"),
            lambda: bob.write_bytes("/tmp/alice-shared", b"overwritten"),
            lambda: bob.mkdir("/not-in-root"),
        ):
            with pytest.raises(PermissionDenied):
                call()
        # What is shared stays readable: a 0644 file in /tmp, and /tmp itself.
        assert bob.read_bytes("/tmp/alice-shared") == private
        assert "alice-shared" in [e.name for e in bob.ls("/tmp")]
    with as_user(cluster, users["alice"]) as alice:
        assert alice.read_bytes("/user/alice/secret/plan.txt") == private
        assert alice.read_bytes("/tmp/alice-only") == private
        assert alice.read_bytes("/tmp/alice-shared") == private


def test_groups_and_chmod_share_on_purpose(
    cluster: LocalCluster, users: dict[str, str], private: bytes
) -> None:
    with as_user(cluster, users["alice"]) as alice:
        alice.mkdir("/user/alice/team")
        alice.chown("/user/alice/team", group="staff")
        alice.chmod("/user/alice/team", 0o770)
        alice.chmod("/user/alice", 0o751)  # others may pass through, not list
        alice.write_bytes("/user/alice/team/notes", b"for the team")
        alice.chown("/user/alice/team/notes", group="staff")
        alice.chmod("/user/alice/team/notes", 0o660)
        with pytest.raises(PermissionDenied):
            alice.chown("/user/alice/team", group="wheel")  # not her group
    with as_user(cluster, users["carol"]) as carol:  # in staff
        assert carol.read_bytes("/user/alice/team/notes") == b"for the team"
        carol.write_bytes("/user/alice/team/notes", b"edited by carol")
        assert carol.info("/user/alice/team/notes").owner == "alice"  # a write keeps the owner
    with as_user(cluster, users["bob"]) as bob:  # not in staff
        with pytest.raises(PermissionDenied):
            bob.read_bytes("/user/alice/team/notes")
        with pytest.raises(PermissionDenied):
            bob.ls("/user/alice")
        # x on her home lets bob through to what is world-readable below it, as on Unix.
        assert bob.read_bytes("/user/alice/secret/plan.txt") == private
    with as_user(cluster, users["alice"]) as alice:
        alice.chmod("/user/alice", 0o750)


def test_permissions_through_the_cli(
    cluster: LocalCluster, users: dict[str, str], private: bytes, tmp_path: Path
) -> None:
    bob = Cli(cluster.url, tmp_path, users["bob"])
    for args in (
        ("get", "/user/alice/secret/plan.txt", str(tmp_path / "stolen")),
        ("ls", "/user/alice"),
        ("rm", "/tmp/alice-shared"),
        ("mv", "/tmp/alice-shared", "/tmp/mine"),
        ("rmdir", "/user/alice/secret", "--yes"),
    ):
        assert "permission denied" in bob.fails(*args)
    assert not (tmp_path / "stolen").exists()
    listing = Cli(cluster.url, tmp_path, users["alice"])("ls", "-l", "/tmp").ok().out
    assert "-rw-------  alice" in listing


# --- data nodes -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def block(cluster: LocalCluster, private: bytes) -> tuple[wire.BlockInfo, str, bytes]:
    """One block of alice's private file, where it lives, and the cluster secret."""
    with cluster.client() as admin:
        status = admin.info("/user/alice/secret/plan.txt")
    info = (status.blocks or [])[0]
    secret = (cluster.namenode.data_dir / "cluster.secret").read_text().strip().encode()
    return info, info.nodes[0].url, secret


def test_data_nodes_refuse_reads_without_a_valid_token(
    block: tuple[wire.BlockInfo, str, bytes],
) -> None:
    info, url, secret = block
    blk = f"{url}/v1/blocks/{info.id}"
    other = "0" * 32
    cases = {
        "none": None,
        "forged": tokens.block_token(b"x" * 64, info.id, "r", 600),
        "expired": tokens.block_token(secret, info.id, "r", -5),
        "another block": tokens.block_token(secret, other, "r", 600),
        # A write token reads back its block only on the nodes it names (the writer's).
        "write, for other nodes": tokens.block_token(
            secret, info.id, "w", 600, [("dn-other", "http://127.0.0.1:9")]
        ),
        "copy, not read": tokens.block_token(secret, info.id, "c", 600, [(info.nodes[0].id, url)]),
        "garbage": "r.notanumber.zz",
    }
    for label, token in cases.items():
        headers = {wire.H_BLOCK_TOKEN: token} if token else {}
        status, body = http("GET", blk, headers=headers)
        assert status == 401, label
        assert isinstance(body, dict) and body["code"] == "unauthenticated", label
    good = {wire.H_BLOCK_TOKEN: tokens.block_token(secret, info.id, "r", 600)}
    status, raw = http("GET", blk, headers=good)
    assert status == 200 and isinstance(raw, bytes) and len(raw) == info.size


def test_data_nodes_refuse_writes_without_a_valid_token(
    cluster: LocalCluster, block: tuple[wire.BlockInfo, str, bytes]
) -> None:
    info, url, secret = block
    frame = wire.FRAME.pack(0, 0)  # an empty block: the smallest valid body
    fresh = hashlib.md5(b"fresh").hexdigest()
    here = [(info.nodes[0].id, url)]
    elsewhere = [(n.id, n.url) for n in info.nodes[1:]] + [("dn-elsewhere", "http://127.0.0.1:9")]
    for label, block_id, token in (
        ("none", fresh, None),
        ("forged", fresh, tokens.block_token(b"y" * 64, fresh, "w", 600, here)),
        ("expired", fresh, tokens.block_token(secret, fresh, "w", -5, here)),
        ("read, not write", fresh, tokens.block_token(secret, fresh, "r", 600, here)),
        ("another block", fresh, tokens.block_token(secret, info.id, "w", 600, here)),
        ("for other nodes", fresh, tokens.block_token(secret, fresh, "w", 600, elsewhere)),
        ("for no node", fresh, tokens.block_token(secret, fresh, "w", 600)),
        ("targets altered", fresh, retarget(tokens.block_token(secret, fresh, "w", 600), here)),
        # Overwriting an existing replica with a token for a different block must fail too.
        ("existing block", info.id, tokens.block_token(secret, fresh, "w", 600, here)),
    ):
        headers = {"Content-Type": "application/octet-stream"}
        if token:
            headers[wire.H_BLOCK_TOKEN] = token
        status, _ = http("PUT", f"{url}/v1/blocks/{block_id}", frame, headers)
        assert status == 401, label
    for node in cluster.datanodes:
        assert not list((node.data_dir / "blocks").glob(f"*/{fresh}*"))
    with cluster.client() as admin:
        assert admin.fsck().healthy == admin.fsck().blocks


def test_a_write_a_data_node_refuses_is_not_passed_down_its_pipeline(
    cluster: LocalCluster, block: tuple[wire.BlockInfo, str, bytes]
) -> None:
    _, _, secret = block
    first, second = (n.url for n in cluster.datanodes)
    targets = [(node_id(n), n.url) for n in cluster.datanodes]

    def put(block_id: str, pipeline: str = "") -> tuple[int, dict[str, Any] | bytes]:
        headers = {
            wire.H_BLOCK_TOKEN: tokens.block_token(secret, block_id, "w", 600, targets),
            "Content-Type": "application/octet-stream",
        }
        if pipeline:
            headers[wire.H_PIPELINE] = pipeline
        return http("PUT", f"{first}/v1/blocks/{block_id}", one_chunk(), headers)

    def puts_on_second() -> float:
        labels = {"role": "datanode", "route": "/v1/blocks/{id}", "method": "PUT"}
        return value(scrape(second), "pydfs_requests_total", **labels)

    fresh = hashlib.md5(b"held by the first node only").hexdigest()
    assert put(fresh)[0] == 200  # on the first node only
    status, body = put(hashlib.md5(b"relayed").hexdigest(), "1")  # forwarded down the pipeline
    assert status == 200 and isinstance(body, dict) and len(body["nodes"]) == 2
    before = puts_on_second()
    status, body = put(fresh, "1")
    assert status == 400 and isinstance(body, dict) and "already exists" in str(body["message"])
    time.sleep(0.5)  # a forwarded copy would have arrived by now
    assert puts_on_second() == before


def one_chunk(data: bytes = b"one small chunk") -> bytes:
    """A block of one chunk, framed as a writer sends it."""
    frames = wire.FRAME.pack(len(data), checksum.crc(data)) + data
    return frames + wire.FRAME.pack(0, checksum.crc(data))


def retarget(token: str, targets: list[tuple[str, str]]) -> str:
    """*token* with other targets put in, its signature kept (a forgery)."""
    mode, expires, _, mac = token.split(".")
    return ".".join((mode, expires, tokens._encode_targets(targets), mac))


def test_a_data_node_forwards_a_write_only_to_the_targets_its_token_names(
    cluster: LocalCluster, block: tuple[wire.BlockInfo, str, bytes]
) -> None:
    """The pipeline comes from the name node's signed grant: a client naming a URL of its own
    (or the same node ten times) in the pipeline header gets no request sent anywhere."""
    import socket

    _, _, secret = block
    first = cluster.datanodes[0]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(1.0)
    trap = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        for label, header in (
            ("a URL of the client's", f"{trap}/anything?x="),
            ("the same node ten times", ",".join([first.url] * 10)),
            ("a pipeline flag", "1"),
        ):
            block_id = hashlib.md5(label.encode()).hexdigest()
            token = tokens.block_token(secret, block_id, "w", 600, [(node_id(first), first.url)])
            headers = {wire.H_BLOCK_TOKEN: token, wire.H_PIPELINE: header}
            status, body = http("PUT", f"{first.url}/v1/blocks/{block_id}", one_chunk(), headers)
            assert status == 200, label
            assert isinstance(body, dict) and body["nodes"] == [node_id(first)], label
            with pytest.raises(TimeoutError):
                listener.accept()  # nothing connected to the client's URL
            for other in cluster.datanodes[1:]:
                assert list((other.data_dir / "blocks").glob(f"*/{block_id}.blk")) == []
    finally:
        listener.close()


def test_block_ids_can_never_name_files_outside_the_block_directory(
    cluster: LocalCluster, block: tuple[wire.BlockInfo, str, bytes]
) -> None:
    _, url, secret = block
    for bad in ("..%2F..%2Fnode_id", "..%2Fnamenode.url", "%2Fetc%2Fpasswd", "ABC", "g" * 32):
        token = tokens.block_token(secret, bad, "r", 600)
        status, body = http("GET", f"{url}/v1/blocks/{bad}", headers={wire.H_BLOCK_TOKEN: token})
        assert status in (400, 404), bad
        assert isinstance(body, dict) and "code" in body, bad


def test_node_calls_need_the_cluster_secret(
    cluster: LocalCluster, users: dict[str, str], block: tuple[wire.BlockInfo, str, bytes]
) -> None:
    _, _, secret = block
    dn = cluster.datanodes[0]
    report = json.dumps({"id": node_id(dn), "blocks": []}).encode()  # would drop every replica
    route = f"{cluster.url}/v1/datanodes/report"
    json_ct = {"Content-Type": "application/json"}
    for headers in (
        {},
        bearer(users["alice"]),
        {"Authorization": f"Node {tokens.node_credential(b'z' * 64)}"},
    ):
        status, _ = http("POST", route, report, {**json_ct, **headers})
        assert status == 401
    ok = {"Authorization": f"Node {tokens.node_credential(secret)}"}
    hb = json.dumps({"id": "probe", "url": "http://127.0.0.1:9", "incarnation": "x",
                     "capacity": 0, "used": 0, "free": 0, "blocks": 0}).encode()  # fmt: skip
    assert http("POST", f"{cluster.url}/v1/datanodes/heartbeat", hb, {**json_ct, **ok})[0] == 200
    with cluster.client() as admin:
        assert admin.fsck().missing == 0


def test_a_data_node_without_the_secret_cannot_start(cluster: LocalCluster, tmp_path: Path) -> None:
    args = ["--namenode", cluster.url, "--port", "0"]
    node = NodeProcess("datanode", "rogue", tmp_path / "rogue", args, tmp_path / "rogue.log")
    node.start()
    assert node.popen is not None
    assert node.popen.wait(timeout=30) != 0
    log = node.log_path.read_text()
    assert "no cluster secret" in log and "Traceback" not in log


# --- hostile paths ----------------------------------------------------------------------


def test_paths_cannot_escape_the_root_and_bad_names_are_refused(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    cli = Cli(cluster.url, tmp_path, cluster.admin_token)
    cli("put", "-", "/../../../escape.txt", input=b"x").ok()
    with cluster.client() as admin:
        assert admin.read_bytes("/escape.txt") == b"x"  # ".." stops at the DFS root
    for bad in ("/a\x01b", "/" + "n" * 256, "/" + "/".join(["d" * 200] * 21)):
        line = cli.fails("mkdir", bad)
        assert "invalid" in line or "longer than" in line, line
    line = cli.fails("put", "-", "/nul\x7fname", input=b"x")
    assert "control character" in line
    token = bearer(cluster.admin_token)
    json_ct = {"Content-Type": "application/json", **token}
    for body in (
        {"path": "/a\x00b"},
        {"path": "relative/../../x\x1b"},
        {"path": "/" + "z" * 300},
        {"path": ""},
        {"path": 7},
        {},
    ):
        status, reply = http(
            "POST", f"{cluster.url}/v1/fs/mkdir", json.dumps(body).encode(), json_ct
        )
        assert status == 400, body
        assert isinstance(reply, dict) and reply["code"] in ("invalid_path", "protocol_error")
    status, _ = http("POST", f"{cluster.url}/v1/fs/mkdir", b"{not json", json_ct)
    assert status == 400
    with cluster.client() as admin:
        names = {e.name for e in admin.ls("/")}
    assert names == {"tmp", "user", "escape.txt"}


def test_request_bodies_are_bounded(cluster: LocalCluster) -> None:
    body = b'{"path": "/' + b"a" * (9 * 1024 * 1024) + b'"}'
    headers = {"Content-Type": "application/json", **bearer(cluster.admin_token)}
    try:
        status, _ = http("POST", f"{cluster.url}/v1/fs/mkdir", body, headers)
    except (ConnectionError, urllib.error.URLError):
        status = 413  # the server may cut the connection once the limit is passed
    assert status in (400, 413)
