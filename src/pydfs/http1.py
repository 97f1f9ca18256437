"""A lean HTTP/1.1 client for ``rpc``'s JSON calls and for blocks small enough to go in one
body: kept-alive connections to one server and ``Content-Length`` bodies, nothing more.

aiohttp's client spends 110-160 µs of CPU on one small call; this one spends less than half
that, most of it in the event loop itself, which a client that stats thousands of paths a
second cannot do without. The name node always answers with a ``Content-Length`` body, so
anything else (a chunked or unterminated body, a malformed status line or header block, a
header block over ``MAX_HEAD``) is a ``ProtocolError``. Failures are pydfs errors naming the
server: ``Unavailable`` (cannot connect, connection lost), ``Timeout`` (nothing heard for the
read timeout), ``ProtocolError``.

``Pool`` serves an event loop; ``Connection`` is its blocking twin, for one-shot commands
(``rpc.BlockingRpc``); they share the request heads and the answer parser. A kept-alive
connection that the server closed while it sat idle is dropped before a request goes out on it
(the pool's protocol sees the close, the blocking twin polls). One lost in the instant between
that check and the request is retried once afresh, but a request that may have reached the
server is sent again only if it is a GET: a POST might have been carried out.
"""

from __future__ import annotations

import asyncio
import re
import select
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple, cast
from urllib.parse import urlsplit

from pydfs import errors

if TYPE_CHECKING:
    import ssl

MAX_HEAD = 64 * 1024  # the name node's header blocks are ~150 bytes
MAX_BODY = 1 << 30
IDLE_LIMIT = 15.0  # idle longer, a connection is closed rather than reused (servers wait 75 s)
COALESCE = 64 * 1024  # a body up to this size goes out in one write with its head
WRITE_CHUNK = 1 << 20  # a larger one goes out in pieces, as the socket drains
RESENDABLE = frozenset({"GET"})  # may be sent twice; the name node answers GET without a body

_TARGET = re.compile(r"[!-~]+")  # printable ASCII without spaces: nothing to split a request on
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name


class Answer(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]  # by lower-case name; the first of repeated ones


class _Lost(Exception):
    """The connection closed under a request; *answered*: some of the answer had arrived."""

    def __init__(self, answered: bool, sent: bool = True, cause: BaseException | None = None):
        super().__init__(cause)
        self.answered, self.sent, self.cause = answered, sent, cause


class _Endpoint:
    """What both twins share: the server's address and the heads of requests to it."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        *,
        ssl_context: ssl.SSLContext | None,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise errors.InvalidArgument(f"not an http(s) URL: {url}")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        if parts.scheme == "https" and ssl_context is None:
            import ssl

            ssl_context = ssl.create_default_context()
        self.ssl = ssl_context if parts.scheme == "https" else None
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._fixed = _fields({"Host": parts.netloc.rpartition("@")[2], **headers})

    def head(
        self,
        method: str,
        target: str,
        body: bytes | None,
        content_type: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        if not _TARGET.fullmatch(target):
            raise errors.InvalidArgument(f"not a request target: {target!r}")
        head = f"{method} {target} HTTP/1.1\r\n".encode() + self._fixed
        if headers:
            head += _fields(headers)
        if body is not None:
            if content_type:
                head += f"Content-Type: {content_type}\r\n".encode()
            head += b"Content-Length: %d\r\n" % len(body)
        elif method != "GET":
            head += b"Content-Length: 0\r\n"
        return head + b"\r\n"

    def _unavailable(self, exc: _Lost) -> errors.Unavailable:
        why = "closed by the server" if exc.cause is None else exc.cause.__class__.__name__
        return errors.Unavailable(f"connection to {self.url} lost ({why})")


def _fields(headers: Mapping[str, str]) -> bytes:
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name) or not value.isprintable() or not value.isascii():
            raise errors.InvalidArgument(f"header {name!r} is not one line of ASCII")
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode()


def parse_head(head: bytes, url: str) -> tuple[int, int, bool, dict[str, str]]:
    """Status, body length, whether the connection stays open, and the headers, from an
    answer's head (the bytes before the blank line)."""
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if (
        version not in (b"HTTP/1.1", b"HTTP/1.0")
        or len(code) != 3
        or not code.isdigit()
        or rest[3:4] not in (b"", b" ")
    ):
        raise errors.ProtocolError(f"{url} sent a malformed status line: {lines[0][:80]!r}")
    status, length, keep_alive = int(code), -1, version == b"HTTP/1.1"
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name.strip() != name or b" " in name:
            raise errors.ProtocolError(f"{url} sent a malformed header line: {line[:80]!r}")
        name = name.lower()
        fields.setdefault(name.decode("latin-1"), value.strip().decode("latin-1"))
        if name == b"content-length":
            value = value.strip()
            if not value.isdigit() or length not in (-1, int(value)) or int(value) > MAX_BODY:
                raise errors.ProtocolError(f"{url} sent a bad Content-Length: {value[:40]!r}")
            length = int(value)
        elif name == b"transfer-encoding":
            raise errors.ProtocolError(f"{url} sent a {value.strip().decode('latin-1')} body")
        elif name == b"connection":
            value = value.lower()
            keep_alive = b"close" not in value and (keep_alive or b"keep-alive" in value)
    if status < 200:
        raise errors.ProtocolError(f"{url} sent an unexpected interim answer {status}")
    if length < 0:
        if status not in (204, 304):
            raise errors.ProtocolError(f"{url} answered {status} without a Content-Length")
        length = 0
    return status, length, keep_alive, fields


def os_error(exc: OSError, url: str) -> errors.Unavailable:
    """The pydfs error for a socket error while talking to *url*."""
    import ssl

    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return errors.Unavailable(f"TLS with {url} failed: {exc}")
    if isinstance(exc, TimeoutError):
        return errors.Timeout(f"{url} did not answer in time")
    if isinstance(exc, ConnectionError | socket.gaierror) or exc.errno is not None:
        return errors.Unavailable(f"cannot reach {url}: {exc.strerror or exc}")
    return errors.Unavailable(f"connection to {url} failed: {exc.__class__.__name__}")


# --- on an event loop ----------------------------------------------------------------------


class _Conn(asyncio.Protocol):
    """One connection of a ``Pool``; the answer is parsed as its bytes arrive."""

    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._head = bytearray()  # a head that came in pieces
        self._chunks: list[bytes] | None = None  # the body's pieces, once the head is in
        self._received = 0
        self._answer: asyncio.Future[Answer] | None = None
        self._status = self._length = 0
        self._fields: dict[str, str] = {}
        self._last = 0.0  # when the request last made progress
        self._timer: asyncio.TimerHandle | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False
        self.keep_alive = True
        self.lost = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    async def exchange(self, head: bytes, body: bytes | None) -> Answer:
        transport = self._transport
        assert transport is not None and self._answer is None
        answer: asyncio.Future[Answer] = self._loop.create_future()
        self._answer = answer
        self._last = self._loop.time()
        if self._timer is None:  # left running between requests: cheaper than one per request
            self._timer = self._loop.call_later(self._pool.read_timeout, self._watch)
        try:
            if body is None or len(body) <= COALESCE:
                transport.write(head + body if body else head)
            else:
                await self._write_large(transport, head + body[:COALESCE], memoryview(body))
            return await answer
        finally:
            self._answer = None

    async def _write_large(
        self, transport: asyncio.Transport, first: bytes, body: memoryview
    ) -> None:
        transport.write(first)
        for start in range(COALESCE, len(body), WRITE_CHUNK):
            if self._answer is None or self._answer.done():  # an early answer, or lost
                self.keep_alive = False  # the rest of the body would be read as a request
                return
            transport.write(body[start : start + WRITE_CHUNK])
            if self._paused:
                self._drained = self._loop.create_future()
                await self._drained

    def data_received(self, data: bytes) -> None:
        answer = self._answer
        if answer is None or answer.done():
            self._close()  # bytes nobody asked for: what follows cannot be trusted
            return
        self._last = self._loop.time()
        if self._chunks is None:  # still in the head
            if self._head:
                self._head += data
                data = bytes(self._head)
            end = data.find(b"\r\n\r\n")
            if end < 0 or end > MAX_HEAD:
                if len(data) > MAX_HEAD:
                    self._fail(errors.ProtocolError(f"{self._pool.url} sent an oversize head"))
                elif not self._head:
                    self._head += data
                return
            self._head.clear()
            try:
                self._status, self._length, self.keep_alive, self._fields = parse_head(
                    data[:end], self._pool.url
                )
            except errors.ProtocolError as exc:
                self._fail(exc)
                return
            data = data[end + 4 :]
            self._chunks, self._received = [], 0
        self._chunks.append(data)  # joined once at the end: growing one buffer copies it often
        self._received += len(data)
        if self._received < self._length:
            return
        if self._received > self._length:
            self._fail(errors.ProtocolError(f"{self._pool.url} sent more than its Content-Length"))
            return
        chunks, self._chunks = self._chunks, None
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        answer.set_result(Answer(self._status, body, self._fields))
        self._wake()

    def eof_received(self) -> bool:
        return False  # close: a half-closed connection is of no further use

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._timer is not None:
            self._timer.cancel()
        self._pool._forget(self)
        if self._answer is not None and not self._answer.done():
            answered = bool(self._head) or self._chunks is not None
            self._answer.set_exception(_Lost(answered=answered, cause=exc))
        self._wake()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._last = self._loop.time()
        self._wake()

    def _watch(self) -> None:
        """The read timeout: fails a request that has made no progress for that long."""
        idle = self._loop.time() - self._last
        if self._answer is None or self.lost:
            self._timer = None
        elif idle < self._pool.read_timeout:
            self._timer = self._loop.call_later(self._pool.read_timeout - idle, self._watch)
        else:
            self._timer = None
            self._fail(errors.Timeout(f"{self._pool.url} did not answer in time"))

    def _fail(self, exc: errors.PydfsError) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)
        self._wake()
        self._close()

    def _wake(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _close(self) -> None:
        """Drop the connection at once: it is idle or broken, so there is nothing to flush,
        and a TLS goodbye would outlive a loop that closes right after ``Pool.close``."""
        self.keep_alive = False
        if self._transport is not None:
            self._transport.abort()


class Pool(_Endpoint):
    """Kept-alive connections to one server for one event loop; each concurrent request takes
    one of its own, up to *size* at once."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        *,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float,
        read_timeout: float,
        size: int = 32,
    ) -> None:
        super().__init__(
            url,
            headers,
            ssl_context=ssl_context,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(size)
        self._closed = False

    async def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        head = self.head(method, target, body, content_type, headers)
        async with self._slots:
            conn = self._checkout()
            if conn is not None:
                try:
                    return await self._exchange(conn, head, body)
                except _Lost as exc:
                    if exc.answered or method not in RESENDABLE:
                        raise self._unavailable(exc) from None
            try:  # the first connection, or a kept-alive one the server closed: afresh
                return await self._exchange(await self._connect(), head, body)
            except _Lost as exc:
                raise self._unavailable(exc) from None

    def close(self) -> None:
        """Close the idle connections, and the busy ones as their answers come in."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn._close()

    def _checkout(self) -> _Conn | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if (
                conn.keep_alive
                and not conn.lost
                and time.monotonic() - conn.idle_since < IDLE_LIMIT
            ):
                return conn
            conn._close()
        return None

    def _forget(self, conn: _Conn) -> None:
        if conn in self._idle:
            self._idle.remove(conn)

    async def _exchange(self, conn: _Conn, head: bytes, body: bytes | None) -> Answer:
        try:
            answer = await conn.exchange(head, body)
        except BaseException:  # lost, timed out, garbled or cancelled: not reusable
            conn._close()
            raise
        if conn.keep_alive and not conn.lost and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn._close()
        return answer

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Conn(self, loop),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
        except TimeoutError:
            raise errors.Timeout(f"{self.url} did not answer in time") from None
        except OSError as exc:
            raise os_error(exc, self.url) from None
        return conn


# --- blocking ------------------------------------------------------------------------------


class Connection(_Endpoint):
    """``Pool``'s blocking twin: one kept-alive socket. Each request blocks its thread, and the
    event loop of a coroutine that calls it."""

    _sock: socket.socket | None = None  # the kept-alive socket, once there is one
    _idle_since = 0.0

    def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        data = self.head(method, target, body, content_type, headers)
        if body:
            data += body
        sock = self._checkout()
        if sock is not None:
            try:
                return self._exchange(sock, data)
            except _Lost as exc:
                if exc.answered or (exc.sent and method not in RESENDABLE):
                    raise self._unavailable(exc) from None
        try:  # the first connection, or a kept-alive one the server closed: afresh
            return self._exchange(self._connect(), data)
        except _Lost as exc:
            raise self._unavailable(exc) from None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _checkout(self) -> socket.socket | None:
        sock = self._sock
        if sock is None:
            return None
        if time.monotonic() - self._idle_since < IDLE_LIMIT and not _readable(sock):
            return sock
        self.close()  # closed by the server (or talking out of turn): nothing to reuse
        return None

    def _exchange(self, sock: socket.socket, data: bytes) -> Answer:
        self._sock = sock
        try:
            answer, keep_alive = self._send_receive(sock, data)
        except BaseException:
            self.close()
            raise
        if keep_alive:
            self._idle_since = time.monotonic()
        else:
            self.close()
        return answer

    def _send_receive(self, sock: socket.socket, data: bytes) -> tuple[Answer, bool]:
        buf = bytearray()
        sent = 0
        try:
            sent = sock.send(data)
            if sent < len(data):
                sock.sendall(memoryview(data)[sent:])
            while (end := buf.find(b"\r\n\r\n")) < 0 or end > MAX_HEAD:
                if len(buf) > MAX_HEAD:
                    raise errors.ProtocolError(f"{self.url} sent an oversize head")
                chunk = sock.recv(65536)
                if not chunk:
                    raise _Lost(answered=bool(buf))
                buf += chunk
            status, length, keep_alive, fields = parse_head(bytes(buf[:end]), self.url)
            got = len(buf) - end - 4
            if got > length:
                raise errors.ProtocolError(f"{self.url} sent more than its Content-Length")
            body = bytearray(length)  # read into place: growing a buffer copies it often
            body[:got] = buf[end + 4 :]
            with memoryview(body) as view:
                while got < length:
                    n = sock.recv_into(view[got:])
                    if not n:
                        raise _Lost(answered=True)
                    got += n
        except TimeoutError:
            raise errors.Timeout(f"{self.url} did not answer in time") from None
        except ConnectionError as exc:
            raise _Lost(answered=bool(buf), sent=sent > 0, cause=exc) from None
        except OSError as exc:
            raise os_error(exc, self.url) from None
        return Answer(status, bytes(body), fields), keep_alive

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), self.connect_timeout)
        except TimeoutError:
            raise errors.Timeout(f"{self.url} did not answer in time") from None
        except OSError as exc:
            raise os_error(exc, self.url) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl is not None:
                sock = self.ssl.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.read_timeout)
        except BaseException as exc:
            sock.close()
            if isinstance(exc, TimeoutError):
                raise errors.Timeout(f"{self.url} did not answer in time") from None
            if isinstance(exc, OSError):
                raise os_error(exc, self.url) from None
            raise
        return sock


def _readable(sock: socket.socket) -> bool:
    """Whether an idle kept-alive socket has something to read: the server closed it (or is
    talking out of turn), so it must not carry another request."""
    pending = getattr(sock, "pending", None)  # TLS bytes already decrypted
    if pending is not None and pending():
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
