"""A lean HTTP/1.1 client for ``rpc``'s JSON calls and for blocks small enough to go in one
body: kept-alive connections to one server, nothing more.

aiohttp's client spends 110-160 µs of CPU on one small call; this one spends less than half
that, most of it in the event loop itself, which a client that stats thousands of paths a
second cannot do without. Answers are parsed by llhttp (``httptools``): a ``Content-Length`` or
chunked body; anything else (an unterminated body, a malformed status line or header block, a
header block over ``MAX_HEAD``) is a ``ProtocolError``. Failures are pydfs errors naming the
server: ``Unavailable`` (cannot connect, connection lost), ``Timeout`` (nothing heard for the
read timeout), ``ProtocolError``.

A kept-alive connection that the server closed while it sat idle is dropped before a request
goes out on it (its protocol sees the close). One lost in the instant between that check and
the request is retried once afresh, but a request that may have reached the server is sent
again only if it is a GET: a POST might have been carried out.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple, cast
from urllib.parse import urlsplit

import httptools

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
    """A server's address and the heads of requests to it."""

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
    """One connection of a ``Pool``; llhttp parses the answer as its bytes arrive."""

    def __init__(self, pool: Pool, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser: httptools.HttpResponseParser | None = None  # of the answer awaited
        self._got = 0  # bytes of the answer so far
        self._in_body = False
        self._framed = False  # by a Content-Length or as chunks: its end is known
        self._chunks: list[bytes] = []  # the body's pieces, joined once at the end
        self._received = 0
        self._fields: dict[str, str] = {}
        self._whole: Answer | None = None
        self._answer: asyncio.Future[Answer] | None = None
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
        self._parser = httptools.HttpResponseParser(self)
        self._got = self._received = 0
        self._in_body = self._framed = False
        self._chunks, self._fields, self._whole = [], {}, None
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
        answer, parser = self._answer, self._parser
        if answer is None or answer.done() or parser is None:
            self._close()  # bytes nobody asked for: what follows cannot be trusted
            return
        self._last = self._loop.time()
        self._got += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if not isinstance(cause, errors.ProtocolError):
                cause = self._garbled(f"a malformed answer ({exc})")
            self._fail(cause)
            return
        if self._whole is not None:
            self._parser = None
            answer.set_result(self._whole)
            self._wake()
        elif not self._in_body and self._got > MAX_HEAD:
            self._fail(self._garbled("an oversize head"))

    # --- llhttp's callbacks: a ProtocolError raised here is what feed_data's error carries ---

    def on_message_begin(self) -> None:
        if self._whole is not None:
            raise self._garbled("more than its answer")

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length":
            if int(value) > MAX_BODY:  # llhttp checked the digits
                raise self._garbled(f"a body too large ({int(value)} bytes)")
            self._framed = True
        elif name == b"transfer-encoding":
            if b"chunked" not in value.lower():
                raise self._garbled(f"a {value.decode('latin-1')} body")
            self._framed = True  # llhttp refuses one that does not end in chunked
        self._fields.setdefault(name.decode("latin-1"), value.decode("latin-1").strip())

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        if status < 200:
            raise self._garbled(f"an unexpected interim answer {status}")
        if not self._framed and status not in (204, 304):
            raise self._garbled(f"{status} without a Content-Length")
        self.keep_alive = self._parser.should_keep_alive()
        self._in_body = True

    def on_body(self, body: bytes) -> None:
        self._received += len(body)
        if self._received > MAX_BODY:
            raise self._garbled("a body too large")
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        assert self._parser is not None
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._whole = Answer(self._parser.get_status_code(), body, self._fields)

    def _garbled(self, what: str) -> errors.ProtocolError:
        return errors.ProtocolError(f"{self._pool.url} sent {what}")

    def eof_received(self) -> bool:
        return False  # close: a half-closed connection is of no further use

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._timer is not None:
            self._timer.cancel()
        self._pool._forget(self)
        if self._answer is not None and not self._answer.done():
            answered = self._got > 0
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
