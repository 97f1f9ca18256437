"""TLS: ``pydfs cluster up --tls`` works end to end, and a client without the CA is refused."""

from __future__ import annotations

import hashlib
import os
import signal
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pydfs import Client
from pydfs.errors import Unavailable
from tests.conftest import BLOCK_SIZE, Cli, make_cluster, metadata_flag, wait_healthy


def test_cluster_up_tls_works_end_to_end(tmp_path: Path) -> None:
    """The real command, as a user runs it: certificates, nodes, client config, self-check."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDFS_")}
    env["PYDFS_CONFIG"] = str(tmp_path / "client.toml")
    cmd = [sys.executable, "-m", "pydfs", "cluster", "up", "--tls", "--dir", str(tmp_path / "c")]
    cmd += metadata_flag(tmp_path / "c")
    proc = subprocess.Popen(
        [*cmd, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    )
    assert proc.stdout is not None
    out = ""
    try:
        deadline = time.monotonic() + 60
        while "Press Ctrl-C" not in out:
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, f"cluster up failed: {out}"
            out += line
        assert "TLS on" in out and "identical" in out, out
        config = tomllib.loads((tmp_path / "client.toml").read_text())["client"]
        assert config["namenode"].startswith("https://127.0.0.1:")
        assert Path(config["ca"]).exists()
        # The configured CLI works with nothing else to go on...
        shell = {k: v for k, v in env.items() if k != "PYDFS_NAMENODE"}
        put = subprocess.run(
            [sys.executable, "-m", "pydfs", "put", "-", "/tmp/over-tls"],
            input=b"sealed",
            env=shell,
            capture_output=True,
        )
        assert put.returncode == 0, put.stderr
        get = subprocess.run(
            [sys.executable, "-m", "pydfs", "get", "/tmp/over-tls", "-"],
            env=shell,
            capture_output=True,
        )
        assert get.stdout == b"sealed", get.stderr
        # ...and without the CA the same command is refused, in one line.
        other = tmp_path / "other.toml"
        other.write_text(
            f'[client]\nnamenode = "{config["namenode"]}"\ntoken = "{config["token"]}"\n'
        )
        bare = subprocess.run(
            [sys.executable, "-m", "pydfs", "ls", "/"],
            env={**shell, "PYDFS_CONFIG": str(other)},
            capture_output=True,
            text=True,
        )
        assert bare.returncode == 12, bare.stdout  # unavailable
        assert "TLS" in bare.stderr and "certificate" in bare.stderr, bare.stderr
        assert "Traceback" not in bare.stderr and len(bare.stderr.strip().splitlines()) == 1
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        proc.stdout.close()


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with make_cluster(tmp_path_factory.mktemp("tls"), tls=True) as c:
        yield c


def test_every_node_serves_https_and_replication_runs_over_it(tls_cluster) -> None:  # type: ignore[no-untyped-def]
    assert tls_cluster.url.startswith("https://")
    assert all(n.url.startswith("https://") for n in tls_cluster.datanodes)
    data = os.urandom(3 * BLOCK_SIZE + 5)
    with tls_cluster.client() as fs:
        status = fs.write_bytes("/tmp/blob", data)  # pipelined data node to data node
        assert all(len(b.nodes) == 2 for b in status.blocks or [])
        assert hashlib.sha256(fs.read_bytes("/tmp/blob")).digest() == hashlib.sha256(data).digest()
        fs.setrep("/tmp/blob", 1)
        wait_healthy(tls_cluster, fs)
        fs.setrep("/tmp/blob", 2)  # a replication copy, node to node, with a block token
        wait_healthy(tls_cluster, fs)
        assert fs.read_bytes("/tmp/blob") == data


def test_clients_without_the_ca_are_refused(tls_cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with Client(tls_cluster.url, token=tls_cluster.admin_token) as fs, pytest.raises(Unavailable):
        fs.ls("/")
    line = Cli(tls_cluster.url, tmp_path, tls_cluster.admin_token).fails("ls", "/")
    assert "certificate" in line
    assert Cli(tls_cluster.url, tmp_path, tls_cluster.admin_token, ca=tls_cluster.ca)(
        "ls", "/"
    ).ok()
    # Plain HTTP to a TLS port gets nowhere, and neither does an unverified TLS client's token
    # reach an impostor: the server's certificate is checked against the CA.
    plain = tls_cluster.url.replace("https://", "http://")
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"{plain}/v1/health", timeout=5)
    ctx = ssl.create_default_context(cafile=str(tls_cluster.ca))
    with urllib.request.urlopen(f"{tls_cluster.url}/v1/health", timeout=5, context=ctx) as r:
        assert r.status == 200


def test_a_tls_connection_moves_from_the_fast_path_to_aiohttp(tls_cluster) -> None:  # type: ignore[no-untyped-def]
    """The name node's fast path answers the API over TLS too, and hands a kept-alive TLS
    connection to aiohttp mid-way (the web UI, /metrics) without breaking it."""
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(tls_cluster.url)
    ctx = ssl.create_default_context(cafile=str(tls_cluster.ca))
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=ctx, timeout=10)
    auth = {"Authorization": f"Bearer {tls_cluster.admin_token}"}
    try:
        conn.request("GET", "/v1/fs/stat?path=/", headers=auth)
        fast = conn.getresponse()
        assert fast.status == 200 and b'"path":"/"' in fast.read()
        assert fast.getheader("Server") is None  # aiohttp always names itself
        conn.request("GET", "/metrics")
        page = conn.getresponse()
        assert page.status == 200 and b"pydfs_requests" in page.read()
        assert page.getheader("Server") is not None
        conn.request("GET", "/v1/fs/stat?path=/", headers=auth)  # same socket, now aiohttp's
        again = conn.getresponse()
        assert again.status == 200 and again.getheader("Server") is not None
        again.read()
        assert conn.sock is not None  # one connection throughout
    finally:
        conn.close()
