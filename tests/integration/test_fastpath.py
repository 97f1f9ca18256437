"""The name node's fast path, over raw sockets against a real name node: the API's requests are
answered by it (no ``Server`` header, which aiohttp always sends), anything else goes to aiohttp
with the bytes already read, and both agree on answers, errors and metrics."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from pydfs.cluster import LocalCluster
from pydfs.namenode.fastpath import ROUTES
from tests.integration.test_metrics import scrape, value


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def fast(self) -> bool:
        return "server" not in self.headers

    def json(self) -> dict[str, object]:
        result = json.loads(self.body)
        assert isinstance(result, dict)
        return result


class Raw:
    """One TCP connection to the name node, spoken to byte by byte."""

    def __init__(self, url: str, token: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = f"{parts.hostname}:{parts.port}"
        self.token = token
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        self.pending = b""

    def request(self, method: str, target: str, body: bytes | None = None, **extra: str) -> bytes:
        head = f"{method} {target} HTTP/1.1\r\nHost: {self.host}\r\n"
        head += f"Authorization: Bearer {self.token}\r\n"
        for name, val in extra.items():
            head += f"{name.replace('_', '-')}: {val}\r\n"
        if body is not None:
            head += f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n"
        return head.encode() + b"\r\n" + (body or b"")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        return data

    def answer(self) -> Answer:
        while b"\r\n\r\n" not in self.pending:
            self.pending += self._more()
        head, _, rest = self.pending.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, val = line.partition(":")
            headers[name.strip().lower()] = val.strip()
        length = int(headers["content-length"])
        while len(rest) < length:
            rest += self._more()
        self.pending = rest[length:]
        return Answer(status, headers, rest[:length])

    def closed(self) -> bool:
        """Has the server closed the connection (with nothing more to read)?"""
        try:
            return self.pending == b"" and self.sock.recv(1) == b""
        except (ConnectionResetError, TimeoutError):
            return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(shared_cluster: LocalCluster) -> Iterator[Raw]:
    conn = Raw(shared_cluster.url, shared_cluster.admin_token)
    yield conn
    conn.close()


def _post(raw: Raw, route: str, obj: object) -> bytes:
    return raw.request("POST", f"/v1{route}", json.dumps(obj).encode())


def test_api_requests_take_the_fast_path_and_pipeline_in_order(raw: Raw) -> None:
    raw.send(
        _post(raw, "/fs/mkdir", {"path": "/fast/a", "parents": True})
        + raw.request("GET", "/v1/fs/stat?path=/fast/a")
        + raw.request("GET", "/v1/fs/stat?path=/fast/missing")
        + raw.request("GET", "/v1/fs/list?path=%2Ffast")
    )
    made, stat, missing, listing = (raw.answer() for _ in range(4))
    assert all(a.fast for a in (made, stat, missing, listing))
    assert (made.status, made.json()["path"]) == (200, "/fast/a")
    assert (stat.status, stat.json()["type"]) == (200, "dir")
    assert missing.status == 404 and missing.json()["code"] == "not_found"
    entries = listing.json()["entries"]
    assert isinstance(entries, list) and [e["name"] for e in entries] == ["a"]
    assert made.headers["content-type"] == "application/json"


def test_body_in_pieces_and_unicode_paths(raw: Raw) -> None:
    name = "/fast/dé jà"
    whole = _post(raw, "/fs/mkdir", {"path": name, "parents": True})
    for i in range(0, len(whole), 7):  # head and body trickle in
        raw.send(whole[i : i + 7])
    assert raw.answer().status == 200
    raw.send(raw.request("GET", "/v1/fs/stat?" + urllib.parse.urlencode({"path": name})))
    got = raw.answer()
    assert got.fast and got.json()["path"] == name


def test_errors_are_the_same_as_aiohttps(shared_cluster: LocalCluster, raw: Raw) -> None:
    raw.token = "not-a-token"
    raw.send(raw.request("GET", "/v1/fs/stat?path=/"))
    bad_token = raw.answer()
    assert bad_token.fast and bad_token.status == 401
    assert bad_token.json()["code"] == "unauthenticated"
    raw.token = shared_cluster.admin_token
    raw.send(raw.request("GET", "/v1/fs/stat"))  # no path
    missing = raw.answer()
    assert missing.status == 400 and "path" in str(missing.json()["message"])
    raw.send(_post(raw, "/fs/mkdir", {"nope": 1}))
    malformed = raw.answer()
    assert malformed.status == 400 and malformed.json()["code"] == "protocol_error"


def test_other_requests_hand_the_connection_to_aiohttp(raw: Raw) -> None:
    raw.send(raw.request("GET", "/v1/fs/stat?path=/"))
    assert raw.answer().fast
    # Pipelined behind a web page: aiohttp answers both, in order, and keeps the connection.
    raw.send(raw.request("GET", "/metrics") + raw.request("GET", "/v1/fs/stat?path=/"))
    page, stat = raw.answer(), raw.answer()
    assert not page.fast and page.status == 200 and b"pydfs_requests" in page.body
    assert not stat.fast and stat.status == 200 and stat.json()["path"] == "/"


def test_a_chunked_body_goes_to_aiohttp(raw: Raw) -> None:
    body = json.dumps({"path": "/fast/chunked", "parents": True}).encode()
    head = raw.request("POST", "/v1/fs/mkdir", Transfer_Encoding="chunked")
    raw.send(head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    got = raw.answer()
    assert not got.fast and got.status == 200 and got.json()["path"] == "/fast/chunked"


def test_a_malformed_head_goes_to_aiohttp(raw: Raw) -> None:
    raw.send(b"GET /v1/fs/stat?path=/ HTTP/1.1\r\nBad Header Name: x\r\n\r\n")
    got = raw.answer()
    assert got.status == 400 and not got.fast


def test_connection_close_is_honoured(raw: Raw) -> None:
    raw.send(raw.request("GET", "/v1/fs/stat?path=/", Connection="close"))
    got = raw.answer()
    assert got.fast and got.status == 200 and got.headers["connection"] == "close"
    assert raw.closed()


def test_fast_requests_are_counted_in_metrics(shared_cluster: LocalCluster, raw: Raw) -> None:
    labels = {"role": "namenode", "route": "/v1/fs/stat", "method": "GET"}
    before = value(scrape(shared_cluster.url), "pydfs_requests_total", **labels, status="200")
    for _ in range(5):
        raw.send(raw.request("GET", "/v1/fs/stat?path=/"))
        assert raw.answer().fast
    after = scrape(shared_cluster.url)
    assert value(after, "pydfs_requests_total", **labels, status="200") == before + 5
    assert value(after, "pydfs_request_seconds_count", **labels) >= 5


def test_routes_match_as_aiohttp_does() -> None:
    routes = ROUTES
    found = routes.find("POST", "/v1/uploads/abc123/commit")
    assert found is not None and found[0].route == "/uploads/{id}/commit"
    assert found[1:] == ("/v1/uploads/{id}/commit", {"id": "abc123"})
    assert routes.find("GET", "/v1/uploads/abc123/commit") is None  # wrong method
    assert routes.find("POST", "/v1/uploads/a/b/commit") is None  # a segment holds no "/"
    assert routes.find("GET", "/v1/fs/stat/") is None


def test_a_client_that_reads_late_gets_every_answer_in_order(
    shared_cluster: LocalCluster, request: pytest.FixtureRequest
) -> None:
    """Forty pipelined listings of 2,000 entries (some 12 MB of answers) sent at once, read only
    after a pause: the server stops at the socket's limit (back-pressure) and goes on as the
    client reads, losing and reordering nothing."""
    with shared_cluster.client() as fs:
        fs.mkdir("/fast/wide", parents=True)
        for i in range(2000):
            fs.touch(f"/fast/wide/f{i:04d}")
    # connected only now: making the files may take longer than the server keeps an idle one
    raw = Raw(shared_cluster.url, shared_cluster.admin_token)
    request.addfinalizer(raw.close)
    raw.send(b"".join(raw.request("GET", "/v1/fs/list?path=/fast/wide") for _ in range(40)))
    raw.send(raw.request("GET", "/v1/fs/stat?path=/fast/wide"))
    time.sleep(0.5)
    for _ in range(40):
        listing = raw.answer()
        entries = listing.json()["entries"]
        assert listing.status == 200 and isinstance(entries, list) and len(entries) == 2000
    assert raw.answer().json()["type"] == "dir"


def test_a_caller_is_refused_before_its_body_is_read(raw: Raw) -> None:
    """No body is buffered for a caller without a valid token: 256 MiB announced, none sent,
    and the answer comes at once, closing the connection (the body would follow)."""
    raw.send(
        b"POST /v1/datanodes/report HTTP/1.1\r\nHost: x\r\nAuthorization: Node nope\r\n"
        b"Content-Length: 268435456\r\n\r\n"
    )
    refused = raw.answer()
    assert refused.fast and refused.status == 401
    assert refused.headers["connection"] == "close" and raw.closed()


@pytest.mark.parametrize(
    "head",
    [
        b"GET /v1/fs/stat?path=/ HTTP/1.1\r\nX-A: a\nContent-Length: 5\r\n\r\n",  # bare LF
        b"GET /v1/fs/stat?path=/ HTTP/1.1\r\nX-A: a\rb\r\n\r\n",  # bare CR
        b"GET /v1/fs/stat?path=/ HTTP/1.1\r\nX-A: a\x00b\r\n\r\n",  # NUL
        b"GET /v1/fs/stat?path=/ HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
    ],
)
def test_heads_the_fast_path_would_read_differently_go_to_aiohttp(raw: Raw, head: bytes) -> None:
    raw.send(head)
    got = raw.answer()
    assert got.status == 400 and not got.fast
