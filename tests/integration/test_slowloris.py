"""Slow and malformed clients, against real nodes: a request's head and body have deadlines, idle
connections are closed, a server holds at most ``max_connections`` (past it, the connection that
has waited longest on its client is closed) so that other clients are still served, and
malformed framing gets a coded JSON 400 at once, from the fast path and from aiohttp alike."""

from __future__ import annotations

import json
import resource
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator

import pytest

from pydfs.cluster import LocalCluster
from tests.conftest import make_cluster
from tests.integration.test_fastpath import Answer, Raw

# Deadlines of the tight cluster (seconds): a head, a body, an idle connection.
HEAD, BODY, IDLE = 1.0, 1.0, 2.0
SLACK = 1.5  # how late a close may come on a busy machine


def _env(mp: pytest.MonkeyPatch, **options: str) -> None:
    for role in ("NAMENODE", "DATANODE"):
        for name, value in options.items():
            mp.setenv(f"PYDFS_{role}_{name.upper()}", value)


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A cluster whose nodes give a client 1 s for a head or a body and close after 2 s idle."""
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, head_timeout=str(HEAD), body_timeout=str(BODY), keepalive_timeout=str(IDLE))
        cluster = make_cluster(tmp_path_factory.mktemp("tight")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _servers(cluster: LocalCluster) -> list[str]:
    return [cluster.url, cluster.datanodes[0].url]


def _connect(url: str) -> socket.socket:
    parts = urllib.parse.urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=5)


def _closed(sock: socket.socket) -> bool:
    """Has the server closed *sock* (whatever it wrote before is skipped)?"""
    sock.setblocking(False)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def _wait_closed(socks: list[socket.socket], within: float, trickle: bytes = b"") -> float:
    """Seconds until every socket is closed by the server (failing after *within*), sending one
    byte of *trickle* on each open one every 0.2 s meanwhile."""
    start = time.monotonic()
    open_ = list(socks)
    sent = 0
    while open_:
        assert time.monotonic() - start < within, f"{len(open_)} connections still open"
        if trickle:
            byte = trickle[sent % len(trickle) : sent % len(trickle) + 1]
            for s in open_:
                try:
                    s.send(byte)
                except OSError:
                    pass
            sent += 1
        time.sleep(0.2)
        open_ = [s for s in open_ if not _closed(s)]
    return time.monotonic() - start


def _answer(sock: socket.socket, timeout: float = 3.0) -> Answer:
    """The next answer on *sock* (a ``Raw`` connection's parser, on a socket of our own)."""
    raw = Raw.__new__(Raw)
    raw.sock, raw.pending = sock, b""
    sock.settimeout(timeout)
    return raw.answer()


def _health(url: str) -> Answer:
    with _connect(url) as s:
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return _answer(s)


def test_trickled_heads_are_closed_while_others_are_served(tight: LocalCluster) -> None:
    socks = []
    for url in _servers(tight):
        for _ in range(20):
            s = _connect(url)
            s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
    with tight.client() as fs:
        fs.write_bytes("/slow-heads", b"served")  # name node and data nodes still answer
        assert fs.read_bytes("/slow-heads") == b"served"
    took = _wait_closed(socks, HEAD + SLACK, trickle=b"X-Slow: 1\r\n")
    assert took >= HEAD * 0.5  # closed by the deadline, not at once
    for s in socks:
        s.close()


def test_trickled_bodies_are_closed(tight: LocalCluster) -> None:
    """A body of the fast path (a mkdir), and one aiohttp reads (chunked): both must keep
    coming at a minimum rate."""
    head = f"POST /v1/fs/mkdir HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tight.admin_token}\r\n"
    fast, chunked = _connect(tight.url), _connect(tight.url)
    fast.sendall(f"{head}Content-Length: 100\r\n\r\n".encode())
    chunked.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n64\r\n".encode())
    _wait_closed([fast, chunked], BODY + SLACK, trickle=b" ")
    fast.close()
    chunked.close()


def test_idle_connections_are_closed(tight: LocalCluster) -> None:
    """After an answer of the fast path or of aiohttp (``/metrics``), a connection that sends
    nothing, or a head that never ends, lasts the keep-alive timeout."""
    socks = []
    for url in _servers(tight):
        for target, trickle in [("/v1/health", b""), ("/metrics", b""), ("/metrics", b"X")]:
            s = _connect(url)
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert _answer(s).status == 200
            if trickle:
                s.sendall(b"GET /v1/health HTTP/1.1\r\n")
            socks.append(s)
    _wait_closed(socks, IDLE + SLACK, trickle=b"X-Slow: 1\r\n")
    for s in socks:
        s.close()


def _refused(answer: Answer) -> None:
    assert answer.status == 400
    assert answer.headers["content-type"].startswith("application/json")
    body = json.loads(answer.body)
    assert body["code"] == "protocol_error" and body["message"]


@pytest.mark.parametrize(
    "head",
    [
        b"GET /v1/health HTTP/1.1\nHost: x\n\n",  # bare LF: no CRLF CRLF ever comes
        b"GET /v1/health HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",  # bare LF in a whole head
        b"GET /v1/health HTTP/1.1\r\nBad Name: x\r\n\r\n",  # aiohttp's parser refuses it
        b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX: \x00\r\n\r\n",  # NUL
    ],
)
def test_malformed_framing_gets_a_coded_400_at_once(tight: LocalCluster, head: bytes) -> None:
    for url in _servers(tight):
        with _connect(url) as s:
            s.sendall(head)
            start = time.monotonic()
            _refused(_answer(s, timeout=HEAD / 2))  # before any deadline
            assert time.monotonic() - start < HEAD / 2
            assert _wait_closed([s], SLACK) < SLACK


def test_malformed_requests_on_an_aiohttp_connection_get_the_coded_400(
    tight: LocalCluster,
) -> None:
    """A connection aiohttp serves (after ``/metrics``): its parser's refusals are coded too."""
    for url in _servers(tight):
        with _connect(url) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _answer(s).status == 200
            s.sendall(b"GET /v1/health HTTP/1.1\r\nBad Name: x\r\n\r\n")
            _refused(_answer(s))


def test_a_body_aiohttp_cannot_decode_gets_the_coded_400(tight: LocalCluster) -> None:
    with _connect(tight.url) as s:
        s.sendall(
            f"POST /v1/fs/mkdir HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tight.admin_token}"
            "\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n"
            "5\r\nnot z\r\n0\r\n\r\n".encode()
        )
        _refused(_answer(s))


def test_past_the_connection_cap_others_are_still_served(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    """Nodes with 256 file descriptors, and 300 connections to each that never finish a head:
    the servers keep at most half as many connections as descriptors (the default cap), and
    answer a new client at once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))  # for the nodes started here
    try:
        cluster = cluster_factory(datanodes=1)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    socks: dict[str, list[socket.socket]] = {url: [] for url in _servers(cluster)}
    try:
        for url, opened in socks.items():
            for i in range(300):
                opened.append(s := _connect(url))
                s.sendall(b"GET /v1/health HTTP/1.1\r\n")
                if i % 16 == 15:
                    time.sleep(0.01)  # a burst past the listen backlog would wait for SYN retries
        for url in socks:
            assert _health(url).status == 200
        with cluster.client() as fs:
            fs.write_bytes("/capped", b"served")
            assert fs.read_bytes("/capped") == b"served"
        time.sleep(0.2)
        for opened in socks.values():
            assert sum(not _closed(s) for s in opened) <= 128
    finally:
        for opened in socks.values():
            for s in opened:
                s.close()
    for node in [cluster.namenode, *cluster.datanodes]:
        assert "Too many open files" not in node.log_path.read_text()
