"""A server's own HTTP/1.1 protocol in front of aiohttp, for its hottest requests.

aiohttp's server, with its middlewares, spends about 100 µs of CPU on a small request before its
handler runs: several times what a stat costs the name node's namespace, or a 4 KiB block read a
data node. A role's ``Front`` says which requests it takes (``find``: by method, path, query
and body length), who may make them (``admit``, on the head, before any of the body is read) and
answers them (``serve``), with the same errors and request metrics as its aiohttp routes. At the
first request that is anything else (the web UI, ``/metrics``, a chunked body, ``Expect``, an
upgrade, a malformed or over-long head, a percent-encoded route) the connection is handed, with
every byte read so far, to aiohttp for the rest of its life: whatever of HTTP the clients do not
use keeps aiohttp's handling.

Requests on one connection are answered in order, one at a time; pipelined ones wait in the
buffer. Reading pauses past ``PAUSE_AT`` bytes buffered behind a request that waits, and the
next request waits while the client does not read its answers (write back-pressure).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Any, Generic, NamedTuple, TypeVar
from urllib.parse import parse_qsl

from pydfs import metrics
from pydfs.errors import PydfsError
from pydfs.server import MAX_REQUEST_LINE, error_body, internal_error

log = logging.getLogger("pydfs.server")

MAX_HEAD = 64 * 1024  # a longer head goes to aiohttp, which applies its own limits
KEEPALIVE = 75.0  # aiohttp's keep-alive timeout: a connection idle this long is closed
PAUSE_AT = 1 << 20  # bytes buffered behind a running request before reading pauses

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name
# A head of printable ASCII lines (tabs and bytes over 127 allowed in header values) ending in
# CRLF: a bare CR or LF, or another control byte, is aiohttp's to refuse.
_HEAD = re.compile(rb"[!-~]+ [!-~]+ [!-~]+(?:\r\n[\t\x20-\x7e\x80-\xff]*)*")
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}

E = TypeVar("E")


class Routes(Generic[E]):
    """Endpoints by method and route template (below the host, ``/v1/...``), with aiohttp's
    reading of ``{name}`` segments."""

    def __init__(self, endpoints: Iterable[tuple[str, str, E]]) -> None:
        self.static: dict[tuple[str, str], E] = {}
        self.dynamic: list[tuple[str, re.Pattern[str], str, E]] = []
        for method, route, ep in endpoints:
            if "{" in route:
                pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^{}/]+)", re.escape(route))
                self.dynamic.append((method, re.compile(pattern), route, ep))
            else:
                self.static[method, route] = ep

    def find(self, method: str, path: str) -> tuple[E, str, dict[str, str]] | None:
        """The endpoint, its route template and the path's ``{name}`` values."""
        ep = self.static.get((method, path))
        if ep is not None:
            return ep, path, {}
        for ep_method, pattern, route, ep in self.dynamic:
            if ep_method == method and (m := pattern.fullmatch(path)):
                return ep, route, m.groupdict()
        return None


class Answer(NamedTuple):
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: bytes = b""  # more header lines, each ending in CRLF


class Request:
    """A request whose head is read: what it asks for is known before any of its body is.
    *endpoint*, *label* (its route template, for metrics) and *match* are what ``Front.find``
    said; *user* is for ``Front.admit`` to set."""

    __slots__ = (
        "body",
        "endpoint",
        "headers",
        "keep_alive",
        "label",
        "length",
        "match",
        "method",
        "query",
        "started",
        "user",
    )

    def __init__(
        self,
        method: str,
        found: tuple[Any, str, dict[str, str]],
        query: dict[str, str],
        headers: dict[str, str],
        length: int,
        keep_alive: bool,
    ) -> None:
        self.method = method
        self.endpoint, self.label, self.match = found
        self.query, self.headers, self.length = query, headers, length
        self.keep_alive = keep_alive
        self.user: Any = None
        self.body = b""
        self.started = time.perf_counter()


class Front:
    """What a server listens with (``server.Front``): one ``_Connection`` per connection,
    *fallback* (aiohttp's protocol factory) for the connections handed over. A role subclasses
    it with the requests it answers."""

    def __init__(
        self, requests: metrics.RequestMetrics, fallback: Callable[[], asyncio.Protocol]
    ) -> None:
        self.metrics = requests
        self.fallback = fallback
        self.connections: set[_Connection] = set()
        self.running: set[asyncio.Task[None]] = set()  # answers being made, client gone or not

    def find(
        self, method: str, path: str, query: dict[str, str], length: int
    ) -> tuple[Any, str, dict[str, str]] | None:
        """The endpoint, route template and path parameters of a request this front answers
        (*length*: its ``Content-Length``, -1 if none), or None for aiohttp to."""
        raise NotImplementedError

    def admit(self, request: Request) -> None:
        """Refuse (raise) a request before its body is read: its caller, its rights."""

    def serve(self, request: Request) -> Answer | Awaitable[Answer]:
        """The answer to an admitted request whose body is read, or an awaitable of it."""
        raise NotImplementedError

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self)

    async def shutdown(self) -> None:
        """Let running requests finish (for up to 10 s), then close every connection."""
        if self.running:
            await asyncio.wait(self.running, timeout=10.0)
        for conn in list(self.connections):
            conn.close()


class _Connection(asyncio.Protocol):
    def __init__(self, front: Front) -> None:
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.pending: Request | None = None  # its head is read, its body not all yet
        self.task: asyncio.Task[None] | None = None
        self.paused = False  # reading
        self.blocked = False  # writing: the client is not reading its answers
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None

    # --- asyncio's side ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.front.connections.add(self)
        loop = asyncio.get_running_loop()
        self.idle_since = loop.time()
        self.timer = loop.call_later(KEEPALIVE, self._check_idle)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.idle_since = asyncio.get_running_loop().time()
        if self.task is None and not self.blocked:
            self._next()
        elif len(self.buf) > PAUSE_AT and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def pause_writing(self) -> None:
        self.blocked = True

    def resume_writing(self) -> None:
        self.blocked = False
        if self.task is None:
            self._resume()

    def _resume(self) -> None:
        """Go on with buffered requests, reading again if it was paused."""
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        self._next()

    def eof_received(self) -> bool:
        return False  # the client is done: close (an answer still being made is dropped)

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self._forget()

    def _forget(self) -> None:
        self.transport = None
        self.front.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _check_idle(self) -> None:
        if self.transport is None:
            return
        loop = asyncio.get_running_loop()
        idle = loop.time() - self.idle_since
        if self.task is None and idle >= KEEPALIVE:
            self.close()
        else:
            self.timer = loop.call_later(max(KEEPALIVE - idle, 1.0), self._check_idle)

    # --- requests ---

    def _next(self) -> None:
        """Serve the buffered requests in order, until one must wait (for its body, or for a
        group fsync) or the connection goes to aiohttp."""
        while self.transport is not None and self.task is None and not self.blocked:
            request = self.pending
            if request is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > MAX_HEAD:
                        self._hand_off()
                    return
                parsed = self._parse(bytes(self.buf[:end]))
                if parsed is None:
                    self._hand_off()
                    return
                request = parsed
                del self.buf[: end + 4]
                try:  # before reading any of the body, as aiohttp's routes do
                    self.front.admit(request)
                except Exception as exc:
                    if request.length:  # its body, unread, would be taken for a request
                        request.keep_alive = False
                    self._send(request, failure(request, exc))
                    continue
                self.pending = request
            if len(self.buf) < request.length:
                return
            request.body = bytes(self.buf[: request.length])
            del self.buf[: request.length]
            self.pending = None
            self._serve(request)

    def _parse(self, head: bytes) -> Request | None:
        """What a request head asks for, or None if it is aiohttp's to answer (anything unusual
        is, so that the two parsers never read a head two ways)."""
        if not _HEAD.fullmatch(head):
            return None
        line, _, fields = head.partition(b"\r\n")
        parts = line.split(b" ")
        if len(line) > MAX_REQUEST_LINE or len(parts) != 3 or parts[2] != b"HTTP/1.1":
            return None
        target = parts[1].decode("ascii")  # _HEAD: printable ASCII
        path, _, qs = target.partition("?")
        if "%" in path or "#" in qs or ";" in qs:
            return None
        length, keep_alive = -1, True
        headers: dict[str, str] = {}
        for field in fields.split(b"\r\n") if fields else ():
            name, colon, value = field.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                return None
            name, value = name.lower(), value.strip(b" \t")
            if name == b"content-length":
                if length >= 0 or not value.isdigit() or len(value) > 18:
                    return None
                length = int(value)
            elif name == b"connection":
                tokens = value.lower()
                if b"upgrade" in tokens:
                    return None
                keep_alive = b"close" not in tokens
            elif name in (b"transfer-encoding", b"expect", b"upgrade"):
                return None
            else:  # the first of repeated fields, as aiohttp's .get
                headers.setdefault(name.decode("ascii"), value.decode("latin-1"))
        try:
            pairs = parse_qsl(qs, keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            return None
        query: dict[str, str] = {}
        for key, value_ in pairs:
            query.setdefault(key, value_)  # the first of repeated parameters, as aiohttp's .get
        method = parts[0].decode("ascii")
        try:
            found = self.front.find(method, path, query, length)
        except Exception:  # a query it cannot read: aiohttp's route answers it
            return None
        if found is None:
            return None
        return Request(method, found, query, headers, max(length, 0), keep_alive)

    def _serve(self, request: Request) -> None:
        try:
            answer = self.front.serve(request)
        except Exception as exc:
            answer = failure(request, exc)
        if isinstance(answer, Answer):
            self._send(request, answer)
        else:
            self.task = asyncio.ensure_future(self._finish(request, answer))
            self.front.running.add(self.task)
            self.task.add_done_callback(self.front.running.discard)

    async def _finish(self, request: Request, pending: Awaitable[Answer]) -> None:
        try:
            answer = await pending
        except Exception as exc:
            answer = failure(request, exc)
        self.task = None
        self._send(request, answer)
        self._resume()

    def _send(self, request: Request, answer: Answer) -> None:
        transport = self.transport
        status = answer.status
        if transport is None or transport.is_closing():
            status = metrics.CLIENT_GONE
        else:
            head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s" % (
                status,
                _REASONS.get(status, b"Unknown"),
                answer.content_type,
                len(answer.body),
                answer.headers,
            )
            if not request.keep_alive:
                head += b"Connection: close\r\n"
            transport.write(b"".join((head, b"\r\n", answer.body)))
            if not request.keep_alive:
                self.close()
            self.idle_since = asyncio.get_running_loop().time()
        self.front.metrics.record(
            request.label, request.method, status, time.perf_counter() - request.started
        )

    def _hand_off(self) -> None:
        """Give the connection, and every byte read from it, to aiohttp."""
        transport, data = self.transport, bytes(self.buf)
        assert transport is not None
        self._forget()
        self.buf = bytearray()
        protocol = self.front.fallback()
        transport.set_protocol(protocol)
        if self.paused:
            transport.resume_reading()
        protocol.connection_made(transport)
        if data:
            protocol.data_received(data)


def error_answer(exc: PydfsError) -> Answer:
    return Answer(exc.status, error_body(exc))


def failure(request: Request, exc: Exception) -> Answer:
    """The answer to *request*, which raised *exc*: its error, or an internal one (logged with
    its traceback), as aiohttp's error middleware answers (``server._errors``)."""
    if not isinstance(exc, PydfsError):
        log.error("%s %s failed", request.method, request.label, exc_info=exc)
        exc = internal_error()
    return error_answer(exc)
