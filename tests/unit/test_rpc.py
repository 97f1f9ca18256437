"""rpc.Rpc over http1, against real servers on 127.0.0.1.

Most servers here are raw sockets served by threads, so that they can misbehave on purpose
(close at a chosen moment, never answer, answer in chunks or garbage).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio
import uvloop
from aiohttp import web

from pydfs import errors, rpc, wire
from pydfs.certs import ensure_local_ca

OK_BODY = b'{"ok": 1}'


class Request:
    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        self.method, self.target, self.headers, self.body = method, target, headers, body


class Conn:
    """One accepted connection, as its handler sees it."""

    def __init__(self, sock: socket.socket, index: int) -> None:
        self.sock, self.index = sock, index
        self.file = sock.makefile("rb")

    def read_request(self) -> Request | None:
        line = self.file.readline()
        if not line:
            return None
        method, target, _ = line.decode().split(" ", 2)
        headers = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        body = self.file.read(int(headers.get("content-length", 0)))
        return Request(method, target, headers, body)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self, body: bytes = OK_BODY, status: int = 200, extra: str = "") -> None:
        head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
        self.send(head.encode() + body)


Handler = Callable[[Conn, "RawServer"], None]


class RawServer:
    """A threaded server on 127.0.0.1 port 0; *handler* runs for each connection."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler, self.tls = handler, tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[Request] = []
        self.connections = 0
        self.closed = threading.Event()  # set when a handler sees a client close
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            self._socks.append(sock)
            thread = threading.Thread(target=self._serve, args=(sock, self.connections))
            self.connections += 1
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, index: int) -> None:
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
                self._socks.append(sock)
            conn = Conn(sock, index)
            self.handler(conn, self)
            conn.file.close()
        except (OSError, ValueError):
            pass  # the client went away, or the test closed the server
        finally:
            sock.close()  # a handler that returns closes its connection

    def close(self) -> None:
        self._stop.set()
        self._accepter.join()
        self.listener.close()
        for sock in self._socks:
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)


def serve_all(conn: Conn, server: RawServer) -> None:
    """Answer every request of the connection, keeping it alive."""
    while (req := conn.read_request()) is not None:
        server.requests.append(req)
        conn.answer()
    server.closed.set()


@pytest.fixture
def raw_server() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Handler = serve_all, tls: ssl.SSLContext | None = None) -> RawServer:
        servers.append(RawServer(handler, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest_asyncio.fixture
async def make_rpc() -> AsyncIterator[Callable[..., rpc.Rpc]]:
    """Every one made is closed, on the test's loop."""
    made: list[rpc.Rpc] = []

    def make(url: str, **options: object) -> rpc.Rpc:
        made.append(rpc.Rpc(url, backoff=0.01, **options))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for r in made:
        r.close()
    await asyncio.sleep(0)  # the transports finish closing


@pytest.mark.asyncio
async def test_calls_reuse_one_kept_alive_connection(raw_server, make_rpc):
    server = raw_server()
    r = make_rpc(server.url, headers={"Authorization": "Bearer t0k"})
    for i in range(5):
        assert await r.call("GET", "/fs/stat", reply=dict, params={"path": f"/a b/{i}"}) == {
            "ok": 1
        }
    assert await r.call("POST", "/fs/mkdir", {"path": "/x"}, reply=dict) == {"ok": 1}
    await r.call("DELETE", "/uploads/7")
    assert server.connections == 1
    get, post, delete = server.requests[0], server.requests[5], server.requests[6]
    assert get.method == "GET" and get.target == "/v1/fs/stat?path=/a%20b/0"  # slashes as they are
    assert get.headers["authorization"] == "Bearer t0k"
    assert get.headers["host"] == server.url.removeprefix("http://")
    assert post.headers["content-type"] == "application/json"
    assert json.loads(post.body) == {"path": "/x"}
    assert delete.method == "DELETE" and delete.headers["content-length"] == "0"


@pytest.mark.asyncio
async def test_close_closes_the_connection(raw_server, make_rpc):
    server = raw_server()
    r = make_rpc(server.url)
    await r.call("GET", "/x")
    r.close()
    assert await asyncio.to_thread(server.closed.wait, 5)


@pytest.mark.asyncio
async def test_concurrent_calls_share_a_bounded_pool(raw_server):
    lock = threading.Lock()
    busy = {"now": 0, "most": 0}

    def slow(conn: Conn, server: RawServer) -> None:
        while (req := conn.read_request()) is not None:
            with lock:
                busy["now"] += 1
                busy["most"] = max(busy["most"], busy["now"])
            threading.Event().wait(0.01)
            with lock:
                busy["now"] -= 1
            conn.answer(req.target.encode().replace(b"/v1/n/", b"", 1))

    server = raw_server(slow)
    r = rpc.Rpc(server.url, connections=4)
    try:
        got = await asyncio.gather(*(r.call("GET", f"/n/{i}", reply=int) for i in range(40)))
    finally:
        r.close()
        await asyncio.sleep(0)
    assert got == list(range(40))
    assert server.connections == 4 and busy["most"] == 4


def test_concurrent_calls_on_uvloop(raw_server):
    server = raw_server()

    async def main() -> list[dict[str, int]]:
        r = rpc.Rpc(server.url)
        try:
            return await asyncio.gather(*(r.call("GET", "/x", reply=dict) for _ in range(20)))
        finally:
            r.close()
            await asyncio.sleep(0)

    assert uvloop.run(main()) == [{"ok": 1}] * 20
    assert 1 <= server.connections <= 20


@pytest.mark.asyncio
async def test_a_connection_closed_while_idle_is_not_reused(raw_server, make_rpc):
    def one_each(conn: Conn, server: RawServer) -> None:
        req = conn.read_request()
        assert req is not None
        server.requests.append(req)
        conn.answer()  # and close, without saying so

    server = raw_server(one_each)
    r = make_rpc(server.url, retries=0)
    assert await r.call("POST", "/a", {}, reply=dict) == {"ok": 1}
    await asyncio.sleep(0.05)  # the close has arrived by now
    assert await r.call("POST", "/b", {}, reply=dict) == {"ok": 1}
    assert [q.target for q in server.requests] == ["/v1/a", "/v1/b"]
    assert server.connections == 2


def closes_on_second_request(conn: Conn, server: RawServer) -> None:
    """The first connection answers once, then takes a second request and closes on it (the
    race of a server closing an idle connection just as a request goes out); later connections
    answer everything."""
    if conn.index > 0:
        return serve_all(conn, server)
    for n in range(2):
        req = conn.read_request()
        assert req is not None
        server.requests.append(req)
        if n == 0:
            conn.answer()


@pytest.mark.asyncio
async def test_a_get_lost_before_its_answer_is_retried_once_afresh(raw_server, make_rpc):
    server = raw_server(closes_on_second_request)
    r = make_rpc(server.url, retries=0)
    await r.call("GET", "/a")
    assert await r.call("GET", "/b", reply=dict) == {"ok": 1}
    assert [q.target for q in server.requests] == ["/v1/a", "/v1/b", "/v1/b"]
    assert server.connections == 2


@pytest.mark.asyncio
async def test_a_post_that_may_have_arrived_is_resent_with_its_request_id(raw_server, make_rpc):
    server = raw_server(closes_on_second_request)
    r = make_rpc(server.url)
    await r.call("POST", "/a")
    assert await r.call("POST", "/b", {"n": 1}, reply=dict) == {"ok": 1}
    assert [q.target for q in server.requests] == ["/v1/a", "/v1/b", "/v1/b"]
    ids = [q.headers["x-pydfs-request"] for q in server.requests]
    assert ids[1] == ids[2] != ids[0]  # the same request, sent again: the server applies it once
    assert re.fullmatch("[0-9a-f]{32}", ids[1])
    assert all(q.headers["x-request-id"] == q.headers["x-pydfs-request"] for q in server.requests)


@pytest.mark.asyncio
async def test_request_ids_grow_with_time(raw_server, make_rpc):
    """A name node keeps the ids in an index (``namenode.applied``): ids that grow go in at
    its end, where random ones would land all over it and cost more as it grows."""
    server = raw_server()
    r = make_rpc(server.url)
    for i in range(20):
        await r.call("POST", f"/c{i}")
    ids = [q.headers["x-pydfs-request"] for q in server.requests]
    assert len(set(ids)) == 20 and all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)
    assert ids == sorted(ids)


@pytest.mark.asyncio
async def test_a_connection_lost_mid_answer_is_unavailable(raw_server, make_rpc):
    def half(conn: Conn, server: RawServer) -> None:
        req = conn.read_request()
        assert req is not None
        server.requests.append(req)
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")

    server = raw_server(half)
    r = make_rpc(server.url, retries=0)
    with pytest.raises(errors.Unavailable, match="lost"):
        await r.call("GET", "/a")
    with pytest.raises(errors.Unavailable, match="lost"):
        await r.call("POST", "/b")
    assert [q.target for q in server.requests] == ["/v1/a", "/v1/b"]


@pytest.mark.asyncio
async def test_unavailable_answers_are_retried_until_the_failover_timeout(raw_server, make_rpc):
    def busy(conn: Conn, server: RawServer) -> None:
        while (req := conn.read_request()) is not None:
            server.requests.append(req)
            conn.answer(b"", status=503)

    server = raw_server(busy)
    r = make_rpc(server.url, retries=0, failover_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(errors.Unavailable, match="503"):
        await r.call("GET", "/a")
    assert 0.2 < time.monotonic() - started < 2
    gets = len(server.requests)
    assert gets >= 3  # backoff: 0.01 s, doubling
    with pytest.raises(errors.Unavailable):
        await r.call("POST", "/b")
    posts = server.requests[gets:]
    assert len(posts) >= 3 and len({q.headers["x-pydfs-request"] for q in posts}) == 1


@pytest.mark.asyncio
async def test_a_refusal_is_not_retried(raw_server, make_rpc):
    def refuses(conn: Conn, server: RawServer) -> None:
        while (req := conn.read_request()) is not None:
            server.requests.append(req)
            conn.answer(b'{"code": "not_found", "message": "no such file"}', status=404)

    server = raw_server(refuses)
    r = make_rpc([server.url, server.url])
    with pytest.raises(errors.NotFound, match="no such file"):
        await r.call("POST", "/fs/move", {})
    assert len(server.requests) == 1


@pytest.mark.asyncio
async def test_a_refused_connection_is_unavailable_naming_the_url(make_rpc):
    with socket.create_server(("127.0.0.1", 0)) as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    r = make_rpc(url, retries=0)
    with pytest.raises(errors.Unavailable, match=f"cannot reach {url}"):
        await r.call("GET", "/a")


@pytest.mark.asyncio
async def test_a_server_that_never_answers_times_out(raw_server, make_rpc, monkeypatch):
    gone = threading.Event()

    def silent(conn: Conn, server: RawServer) -> None:
        conn.read_request()
        gone.wait(5)

    monkeypatch.setattr(rpc, "READ_TIMEOUT", 0.2)
    server = raw_server(silent)
    r = make_rpc(server.url, retries=0)
    try:
        with pytest.raises(errors.Timeout, match="did not answer in time"):
            await asyncio.wait_for(r.call("POST", "/a"), 5)
    finally:
        gone.set()


GARBAGE = {
    "bad chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "gzip, not chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n{}",
    "no length": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{}",
    "bad status line": b"HTTP/1.1 OK 200\r\nContent-Length: 2\r\n\r\n{}",
    "not http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "bad header": b"HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\n{}",
    "bad length": b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\n{}",
    "two lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "interim": b"HTTP/1.1 100 Continue\r\n\r\n",
    "oversize head": b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"x" * 70_000,
    "extra bytes": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\n",
    "not an error body": b"HTTP/1.1 500 Oops\r\nContent-Length: 5\r\n\r\noops!",
    "not the reply": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]",
}


@pytest.mark.asyncio
async def test_chunked_answers_are_read_and_the_connection_kept(raw_server, make_rpc):
    """A server (or a proxy) may answer in chunks, split anywhere, with chunk extensions and
    trailers: the body is what the chunks hold, and the connection carries the next call."""
    chunked = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5;ext=1\r\n{"ok"\r\n5\r\n: 1, \r\n'
        + b"%x\r\n" % 5000
        + b'"a": "'
        + b"x" * 4992
        + b'"}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )

    def in_pieces(conn: Conn, server: RawServer) -> None:
        while (req := conn.read_request()) is not None:
            server.requests.append(req)
            for i in range(0, len(chunked), 7):
                conn.send(chunked[i : i + 7])

    server = raw_server(in_pieces)
    r = make_rpc(server.url)
    for _ in range(2):
        assert await r.call("GET", "/a", reply=dict) == {"ok": 1, "a": "x" * 4992}
    assert server.connections == 1 and len(server.requests) == 2


@pytest.mark.parametrize("answer", GARBAGE.values(), ids=GARBAGE.keys())
@pytest.mark.asyncio
async def test_a_garbled_answer_is_a_protocol_error(raw_server, make_rpc, answer):
    hold = threading.Event()

    def garble(conn: Conn, server: RawServer) -> None:
        while (req := conn.read_request()) is not None:
            server.requests.append(req)
            conn.send(answer)
            hold.wait(5)  # and keep the connection open: the client must not wait for more

    server = raw_server(garble)
    r = make_rpc(server.url)
    try:
        with pytest.raises(errors.ProtocolError) as raised:
            await asyncio.wait_for(r.call("GET", "/a", reply=dict), 5)
        if answer is not GARBAGE["not the reply"]:  # that one, wire.decode reports
            assert server.url in str(raised.value)
        assert len(server.requests) == 1
    finally:
        hold.set()


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (404, wire.ErrorBody("not_found", "no /x"), errors.NotFound),
        (409, wire.ErrorBody("already_exists", "/x exists"), errors.AlreadyExists),
        (401, wire.ErrorBody("unauthenticated", "who?"), errors.Unauthenticated),
        (400, wire.ErrorBody("invalid_path", "x"), errors.InvalidPath),
        (507, wire.ErrorBody("no_space", "full"), errors.NoSpace),
    ],
)
@pytest.mark.asyncio
async def test_error_bodies_become_pydfs_errors(raw_server, make_rpc, status, body, error):
    def fail(conn: Conn, server: RawServer) -> None:
        while (req := conn.read_request()) is not None:
            server.requests.append(req)
            conn.answer(wire.encode(body), status=status)

    server = raw_server(fail)
    r = make_rpc(server.url)
    with pytest.raises(error, match=body.message):
        await r.call("GET", "/a", reply=dict)
    assert len(server.requests) == 1  # not retried
    with pytest.raises(error):  # and the connection is still good
        await r.call("POST", "/b", {}, reply=dict)
    assert server.connections == 1


@pytest.mark.asyncio
async def test_connection_close_is_honoured(raw_server, make_rpc):
    def close_each(conn: Conn, server: RawServer) -> None:
        req = conn.read_request()
        assert req is not None
        conn.answer(extra="Connection: close\r\n")
        server.closed.wait(5)  # the client must not wait for the close

    server = raw_server(close_each)
    r = make_rpc(server.url)
    try:
        for _ in range(3):
            await asyncio.wait_for(r.call("POST", "/a", reply=dict), 5)
        assert server.connections == 3
    finally:
        server.closed.set()


@pytest.mark.asyncio
async def test_large_bodies_both_ways(raw_server, make_rpc):
    def echo(conn: Conn, server: RawServer) -> None:
        while (req := conn.read_request()) is not None:
            conn.answer(req.body)

    server = raw_server(echo)
    r = make_rpc(server.url)
    blocks = [f"{i:032x}" for i in range(200_000)]  # ~7 MB of JSON, as a big block report
    assert await r.call("POST", "/report", blocks, reply=list[str]) == blocks


@pytest.mark.asyncio
async def test_against_aiohttp_server():
    async def stat(request: web.Request) -> web.Response:
        if request.query["path"] == "/missing":
            return web.Response(status=404, body=wire.encode(wire.ErrorBody("not_found", "gone")))
        return web.json_response({"path": request.query["path"], "peer": request.remote})

    async def mkdir(request: web.Request) -> web.Response:
        return web.json_response(await request.json())

    app = web.Application()
    app.router.add_get("/v1/fs/stat", stat)
    app.router.add_post("/v1/fs/mkdir", mkdir)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0]
    r = rpc.Rpc(f"http://{host}:{port}/")
    try:
        calls = [
            r.call("GET", "/fs/stat", reply=dict, params={"path": f"/d{i}"}) for i in range(50)
        ]
        got = await asyncio.gather(*calls)
        assert [g["path"] for g in got] == [f"/d{i}" for i in range(50)]
        assert await r.call("POST", "/fs/mkdir", {"path": "/é"}, reply=dict) == {"path": "/é"}
        with pytest.raises(errors.NotFound, match="gone"):
            await r.call("GET", "/fs/stat", params={"path": "/missing"})
    finally:
        r.close()
        await runner.cleanup()


@pytest.fixture(scope="module")
def local_ca(tmp_path_factory):
    return ensure_local_ca(tmp_path_factory.mktemp("ca"))


@pytest.mark.asyncio
async def test_tls_verified_with_the_ca_bundle(raw_server, make_rpc, local_ca):
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(local_ca.cert, local_ca.key)
    server = raw_server(tls=tls)
    r = make_rpc(server.url, ca=local_ca.ca)
    for _ in range(3):
        assert await r.call("GET", "/a", reply=dict) == {"ok": 1}
    assert server.connections == 1


@pytest.mark.asyncio
async def test_tls_refused_without_the_ca_bundle(raw_server, make_rpc, local_ca):
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(local_ca.cert, local_ca.key)
    server = raw_server(tls=tls)
    r = make_rpc(server.url, retries=0)
    with pytest.raises(errors.Unavailable, match=f"TLS with {server.url} failed"):
        await r.call("GET", "/a", reply=dict)
    assert server.requests == []


def test_a_bad_ca_bundle_is_an_invalid_argument(tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(errors.InvalidArgument, match="CA bundle"):
        rpc.Rpc("https://127.0.0.1:1", ca=tmp_path / "ca.pem")


def test_headers_cannot_smuggle_lines():
    with pytest.raises(errors.InvalidArgument):
        rpc.Rpc("http://127.0.0.1:1", headers={"Authorization": "Bearer x\r\nX-Admin: 1"})


# --- rpc.Links: whole block bodies to data nodes -------------------------------------------


@pytest.mark.asyncio
async def test_links_send_request_headers_and_return_answer_headers(raw_server):
    def node(conn: Conn, server: RawServer) -> None:
        while (req := conn.read_request()) is not None:
            server.requests.append(req)
            conn.answer(
                b"block bytes",
                extra="X-Pydfs-Offset: 64\r\nX-Pydfs-Offset: 99\r\nX-Pydfs-Chunk-Crcs: 0a0b\r\n",
            )

    server = raw_server(node)
    links = rpc.Links(None, stall_timeout=5)
    try:
        put = await links.request(server.url, "PUT", "/blocks/b1", b"\x00framed", {"X-A": "1"})
        get = await links.request(server.url, "GET", "/blocks/b1?offset=0&length=9")
    finally:
        links.close()
    assert put.status == 200 and get.body == b"block bytes"
    # Lower-case names; the first of a repeated header, as aiohttp's .get() gives.
    assert get.headers["x-pydfs-offset"] == "64" and get.headers["x-pydfs-chunk-crcs"] == "0a0b"
    sent_put, sent_get = server.requests
    assert (sent_put.method, sent_put.target, sent_put.body) == (
        "PUT",
        "/v1/blocks/b1",
        b"\x00framed",
    )
    assert sent_put.headers["x-a"] == "1"
    assert sent_put.headers["content-type"] == "application/octet-stream"
    assert sent_get.target == "/v1/blocks/b1?offset=0&length=9" and sent_get.body == b""
    assert server.connections == 1  # one kept-alive connection per node


@pytest.mark.asyncio
async def test_links_raise_the_nodes_error_and_refuse_bad_headers(raw_server):
    def refuse(conn: Conn, server: RawServer) -> None:
        while conn.read_request() is not None:
            body = json.dumps({"code": "unauthenticated", "message": "token expired"}).encode()
            conn.answer(body, status=401)

    server = raw_server(refuse)
    links = rpc.Links(None, stall_timeout=5)
    try:
        with pytest.raises(errors.Unauthenticated, match="token expired"):
            await links.request(server.url, "GET", "/blocks/b1")
        with pytest.raises(errors.InvalidArgument, match="one line"):
            await links.request(server.url, "PUT", "/blocks/b1", b"", {"X-Bad": "a\r\nInjected: 1"})
    finally:
        links.close()


# --- several name nodes --------------------------------------------------------------------


def closed_port_url() -> str:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.asyncio
async def test_a_call_fails_over_to_the_next_name_node_and_stays_there(raw_server, make_rpc):
    server = raw_server()
    dead = closed_port_url()
    r = make_rpc(f"{dead}, {server.url}/")
    assert r.urls == [dead, server.url]
    assert await r.call("POST", "/fs/mkdir", {"path": "/x"}, reply=dict) == {"ok": 1}
    assert r.base_url == server.url and r.failovers == 1
    assert await r.call("GET", "/fs/stat", reply=dict) == {"ok": 1}
    assert r.failovers == 1  # it stuck to the one that answered
    assert len(server.requests) == 2


@pytest.mark.asyncio
async def test_a_name_node_that_answers_unavailable_is_passed_over(raw_server, make_rpc):
    def unavailable(conn: Conn, server: RawServer) -> None:
        while (req := conn.read_request()) is not None:
            server.requests.append(req)
            body = b'{"code": "unavailable", "message": "metadata store unreachable"}'
            conn.answer(body, status=503)

    lost, good = raw_server(unavailable), raw_server()
    r = make_rpc([lost.url, good.url])
    assert await r.call("POST", "/fs/create", {"path": "/f"}, reply=dict) == {"ok": 1}
    first, second = lost.requests[0], good.requests[0]
    assert first.headers["x-pydfs-request"] == second.headers["x-pydfs-request"]


@pytest.mark.asyncio
async def test_every_name_node_down_gives_up_at_the_failover_timeout(make_rpc):
    r = make_rpc([closed_port_url(), closed_port_url()], failover_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(errors.Unavailable, match="cannot reach"):
        await r.call("POST", "/fs/mkdir", {"path": "/x"})
    assert 0.2 < time.monotonic() - started < 2
    assert r.failovers >= 4


@pytest.fixture
def hung_url() -> Iterator[str]:
    """A name node that hangs: its kernel completes the connection, nothing ever answers."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.asyncio
async def test_a_call_fails_over_from_a_name_node_that_hangs(raw_server, make_rpc, hung_url):
    good = raw_server()
    r = make_rpc([hung_url, good.url], attempt_timeout=0.3)
    started = time.monotonic()
    assert await r.call("POST", "/fs/mkdir", {"path": "/x"}, reply=dict) == {"ok": 1}
    assert 0.3 <= time.monotonic() - started < 2
    assert r.base_url == good.url and r.failovers == 1
    started = time.monotonic()
    assert await r.call("POST", "/fs/mkdir", {"path": "/y"}, reply=dict) == {"ok": 1}
    assert time.monotonic() - started < 0.3  # straight to the one that answered
    assert r.failovers == 1


@pytest.mark.asyncio
async def test_a_call_timeout_leaves_room_to_fail_over_from_a_hung_name_node(
    raw_server, make_rpc, hung_url
):
    good = raw_server()
    r = make_rpc([hung_url, good.url], call_timeout=1.0)
    assert await r.call("GET", "/fs/stat", reply=dict) == {"ok": 1}
    assert r.base_url == good.url
    assert r.attempt_timeout == 0.5  # each name node its share
    lone = make_rpc(hung_url, call_timeout=0.3)
    assert lone.attempt_timeout is None
    with pytest.raises(errors.Timeout, match=r"within 0\.3 s"):
        await lone.call("GET", "/fs/stat")


@pytest.mark.asyncio
async def test_a_call_that_gives_up_leaves_the_next_call_to_the_next_name_node(
    raw_server, make_rpc, hung_url
):
    good = raw_server()
    r = make_rpc([hung_url, good.url], attempt_timeout=0.3, failover_timeout=0.2)
    with pytest.raises(errors.Timeout, match=r"did not answer within 0\.3 s"):
        await r.call("POST", "/fs/mkdir", {"path": "/x"})
    assert r.base_url == good.url
    assert await r.call("POST", "/fs/mkdir", {"path": "/x"}, reply=dict) == {"ok": 1}
    assert len(good.requests) == 1


def test_a_failover_timeout_out_of_bounds_is_refused():
    for bad in (0, -1, rpc.MAX_FAILOVER_TIMEOUT + 1):
        with pytest.raises(errors.InvalidArgument, match="failover_timeout"):
            rpc.Rpc("http://127.0.0.1:1", failover_timeout=bad)
    with pytest.raises(errors.InvalidArgument, match="no name node"):
        rpc.Rpc(" , ")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_backoff_tries_each_name_node_at_once_then_waits_longer_each_round():
    clock = Clock()
    b = rpc.Backoff(3, 100.0, first=0.1, most=1.0, clock=clock)
    delays = [b.next(answered=False) for _ in range(15)]
    assert all(d is not None for d in delays)
    rounds = [delays[i : i + 3] for i in range(0, 15, 3)]
    for n, (a, b2, wait) in enumerate(rounds, start=1):
        assert a == b2 == 0.0  # the other two name nodes of the round: at once
        assert wait is not None
        assert 0.5 * min(1.0, 0.1 * 2 ** (n - 1)) <= wait <= min(1.0, 0.1 * 2 ** (n - 1))


def test_backoff_gives_up_at_the_deadline():
    clock = Clock()
    b = rpc.Backoff(2, 1.0, first=0.1, clock=clock)
    assert b.next(answered=False) == 0.0
    clock.now = 0.99
    assert b.next(answered=False) == pytest.approx(0.01)  # a last attempt at the deadline
    clock.now = 1.0
    assert b.next(answered=False) is None


def test_backoff_tries_a_lone_unreachable_name_node_a_few_times_one_that_answers_longer():
    clock = Clock()
    b = rpc.Backoff(1, 30.0, retries=2, clock=clock)
    assert b.next(answered=False) is not None
    assert b.next(answered=False) is not None
    assert b.next(answered=False) is None
    b = rpc.Backoff(1, 30.0, retries=2, clock=clock)
    assert all(b.next(answered=True) is not None for _ in range(10))
