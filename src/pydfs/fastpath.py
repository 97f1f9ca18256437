"""A server's own HTTP/1.1 protocol in front of aiohttp, for its hottest requests.

aiohttp's server, with its middlewares, spends about 100 µs of CPU on a small request before its
handler runs: several times what a stat costs the name node's namespace, or a 4 KiB block read a
data node. A role's ``Front`` says which requests it takes (``find``: by method, path, query
and body length), who may make them (``admit``, on the head, before any of the body is read,
awaited if it must be) and
answers them (``serve``), with the same errors and request metrics as its aiohttp routes. At the
first request that is anything else (the web UI, ``/metrics``, a chunked body, ``Expect``, an
upgrade, a malformed head, a percent-encoded route) the connection is handed, with every byte
read so far, to aiohttp for the rest of its life: whatever of HTTP the clients do not use keeps
aiohttp's handling. Only whole heads are handed over: one that is over-long, or whose lines end
in a bare LF (so that it may never seem to end), is refused here.

Every connection is accepted here, so the front keeps the deadlines (``server.Limits``) for a
client's head, its body, and an idle connection, and the cap on connections: past it, the
connection that has waited longest on its client is closed to make room (or, if every one is
being answered, the new one is refused).

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
from pydfs.errors import ProtocolError, PydfsError, Unavailable
from pydfs.server import (
    DEFAULT_LIMITS,
    MAX_REQUEST_LINE,
    MIN_BODY_RATE,
    Limits,
    error_body,
    internal_error,
)

log = logging.getLogger("pydfs.server")

MAX_HEAD = 64 * 1024  # a longer head is refused
PAUSE_AT = 1 << 20  # bytes buffered behind a running request before reading pauses

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name
# A head of printable ASCII lines (tabs and bytes over 127 allowed in header values) ending in
# CRLF: a bare CR or LF, or another control byte, is aiohttp's to refuse.
_HEAD = re.compile(rb"[!-~]+ [!-~]+ [!-~]+(?:\r\n[\t\x20-\x7e\x80-\xff]*)*")
_BARE_LF = re.compile(rb"(?<!\r)\n")
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
        self,
        requests: metrics.RequestMetrics,
        fallback: Callable[[], asyncio.Protocol],
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.metrics = requests
        self.fallback = fallback
        self.limits = limits
        # how often a connection's deadline is looked at, at least: never later than it is due
        self.tick = min(limits.head_timeout, limits.body_timeout, limits.keepalive_timeout)
        self.connections: set[_Connection] = set()
        self.handed = 0  # connections handed to aiohttp, still open
        self.running: set[asyncio.Task[None]] = set()  # answers being made, client gone or not

    def find(
        self, method: str, path: str, query: dict[str, str], length: int
    ) -> tuple[Any, str, dict[str, str]] | None:
        """The endpoint, route template and path parameters of a request this front answers
        (*length*: its ``Content-Length``, -1 if none), or None for aiohttp to."""
        raise NotImplementedError

    def admit(self, request: Request) -> Awaitable[None] | None:
        """Refuse (raise) a request before its body is read: its caller, its rights; or an
        awaitable that does, when that needs the store."""
        return None

    def serve(self, request: Request) -> Answer | Awaitable[Answer]:
        """The answer to an admitted request whose body is read, or an awaitable of it."""
        raise NotImplementedError

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self)

    def _make_room(self) -> bool:
        """At the cap, close the connection that has waited longest on its client (for a head,
        a body, or its next request); False if every one is being answered."""
        if len(self.connections) + self.handed < self.limits.max_connections:
            return True
        waiting = [conn for conn in self.connections if conn.task is None]
        if not waiting:
            return False
        min(waiting, key=lambda conn: conn.since).close()
        return True

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
        self.answered = False  # a first head is timed from connecting, a later from its first byte
        self.since = 0.0  # when the wait for the client's head, body or next request began
        self.timer: asyncio.TimerHandle | None = None

    # --- asyncio's side ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        self.since = loop.time()
        if not self.front._make_room():
            self._refuse(Unavailable("too many connections; try again"))
            return
        self.front.connections.add(self)
        self.timer = loop.call_at(self.since + self.front.tick, self._check)

    def data_received(self, data: bytes) -> None:
        if not self.buf and self.pending is None and self.answered:  # a head begins
            self.since = asyncio.get_running_loop().time()
        self.buf += data
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

    def _check(self) -> None:
        """Close the connection if its client is late, else look again when it is due (or
        after ``Front.tick``, should the connection go on to a wait with a nearer deadline)."""
        if self.transport is None:
            return
        limits = self.front.limits
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = now + self.front.tick  # an answer is being made: the client is not waited on
        if self.task is not None:
            pass
        elif self.pending is not None:
            due = self.since + limits.body_timeout + len(self.buf) / MIN_BODY_RATE
        elif self.buf or not self.answered:
            due = self.since + limits.head_timeout
        else:
            due = self.since + limits.keepalive_timeout
        if now >= due:
            self.close()
        else:
            self.timer = loop.call_at(min(due, now + self.front.tick), self._check)

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
                        self._refuse(ProtocolError("malformed request: head too long"))
                    elif _BARE_LF.search(self.buf):
                        self._refuse(ProtocolError("malformed request: a line ends in a bare LF"))
                    return
                parsed = self._parse(bytes(self.buf[:end]))
                if parsed is None:
                    self._hand_off()
                    return
                request = parsed
                del self.buf[: end + 4]
                try:  # before reading any of the body, as aiohttp's routes do
                    admitting = self.front.admit(request)
                except Exception as exc:
                    self._refuse_admission(request, exc)
                    continue
                if admitting is not None:  # the caller is checked against the store
                    self._start(self._admit(request, admitting))
                    return
                self._admitted(request)
                request = self.pending
            if request is None or len(self.buf) < request.length:
                return
            request.body = bytes(self.buf[: request.length])
            del self.buf[: request.length]
            self.pending = None
            self._serve(request)

    def _admitted(self, request: Request) -> None:
        self.pending = request
        if len(self.buf) < request.length:  # the body's deadline runs from now
            self.since = asyncio.get_running_loop().time()

    def _refuse_admission(self, request: Request, exc: Exception) -> None:
        if request.length:  # its body, unread, would be taken for a request
            request.keep_alive = False
        self._send(request, failure(request, exc))

    async def _admit(self, request: Request, admitting: Awaitable[None]) -> None:
        try:
            await admitting
        except Exception as exc:
            self.task = None
            self._refuse_admission(request, exc)
        else:
            self.task = None
            self._admitted(request)
        self._resume()

    def _start(self, work: Awaitable[None]) -> None:
        self.task = asyncio.ensure_future(work)
        self.front.running.add(self.task)
        self.task.add_done_callback(self.front.running.discard)

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
            self._start(self._finish(request, answer))

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
            transport.write(_response(answer, request.keep_alive))
            if not request.keep_alive:
                self.close()
            self.answered = True
            self.since = asyncio.get_running_loop().time()
        self.front.metrics.record(
            request.label, request.method, status, time.perf_counter() - request.started
        )

    def _refuse(self, exc: PydfsError) -> None:
        """Answer a connection no request of which can be read with *exc*, and close it."""
        if self.transport is not None:
            self.transport.write(_response(error_answer(exc), keep_alive=False))
        self.close()

    def _hand_off(self) -> None:
        """Give the connection, and every byte read from it, to aiohttp."""
        transport, data = self.transport, bytes(self.buf)
        assert transport is not None
        self._forget()
        self.buf = bytearray()
        protocol = _Handed(self.front, self.front.fallback())
        transport.set_protocol(protocol)
        if self.paused:
            transport.resume_reading()
        protocol.connection_made(transport)
        if data:
            protocol.data_received(data)


class _Handed(asyncio.Protocol):
    """A connection handed to aiohttp's protocol *inner*, still counted by its front."""

    def __init__(self, front: Front, inner: asyncio.Protocol) -> None:
        self.front, self.inner = front, inner
        front.handed += 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.handed -= 1
        self.inner.connection_lost(exc)


def _response(answer: Answer, keep_alive: bool) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s" % (
        answer.status,
        _REASONS.get(answer.status, b"Unknown"),
        answer.content_type,
        len(answer.body),
        answer.headers,
    )
    if not keep_alive:
        head += b"Connection: close\r\n"
    return b"".join((head, b"\r\n", answer.body))


def error_answer(exc: PydfsError) -> Answer:
    return Answer(exc.status, error_body(exc))


def failure(request: Request, exc: Exception) -> Answer:
    """The answer to *request*, which raised *exc*: its error, or an internal one (logged with
    its traceback), as aiohttp's error middleware answers (``server._errors``)."""
    if not isinstance(exc, PydfsError):
        log.error("%s %s failed", request.method, request.label, exc_info=exc)
        exc = internal_error()
    return error_answer(exc)
