"""The name node's fast path: its own HTTP/1.1 protocol in front of aiohttp, for the JSON API.

aiohttp's server, with its middlewares, spends about 100 µs of CPU on a small call before the
endpoint runs, several times what a stat costs the namespace. This protocol reads each
connection's requests itself. A request for an endpoint of the table (its method and route),
over HTTP/1.1 with a ``Content-Length`` body within the endpoint's limit, is carried out here,
through the same authentication, answer, error mapping, group commit (``app.Durability``) and
request metrics as aiohttp's route for it. At the first request that is anything else (the web
UI, ``/metrics``, a chunked body, ``Expect``, an upgrade, a malformed or over-long head, a
percent-encoded route) the connection is handed, with every byte read so far, to aiohttp for
the rest of its life: whatever of HTTP the API's clients do not use keeps aiohttp's handling.

Requests on one connection are answered in order, one at a time; pipelined ones wait in the
buffer. Reading pauses past ``PAUSE_AT`` bytes buffered behind a request that waits, and the
next request waits while the client does not read its answers (write back-pressure). A request
that made or saw commits not yet on disk is answered only after they are.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from aiohttp import web

from pydfs import metrics, wire
from pydfs.errors import PydfsError
from pydfs.namenode import app as api
from pydfs.namenode.auth import User
from pydfs.server import MAX_REQUEST_LINE, error_body, internal_error

if TYPE_CHECKING:
    from pydfs.namenode import NameNode

log = logging.getLogger("pydfs.namenode")

MAX_HEAD = 64 * 1024  # a longer head goes to aiohttp, which applies its own limits
KEEPALIVE = 75.0  # aiohttp's keep-alive timeout: a connection idle this long is closed
PAUSE_AT = 1 << 20  # bytes buffered behind a running request before reading pauses

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name
# A head of printable ASCII lines (tabs and bytes over 127 allowed in header values) ending in
# CRLF: a bare CR or LF, or another control byte, is aiohttp's to refuse.
_HEAD = re.compile(rb"[!-~]+ [!-~]+ [!-~]+(?:\r\n[\t\x20-\x7e\x80-\xff]*)*")
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


class Routes:
    """The endpoint table by method and path, with aiohttp's reading of ``{name}`` segments."""

    def __init__(self, endpoints: list[api.Endpoint]) -> None:
        self.static: dict[tuple[str, str], api.Endpoint] = {}
        self.dynamic: list[tuple[str, re.Pattern[str], api.Endpoint]] = []
        for ep in endpoints:
            route = f"{wire.API}{ep.route}"
            if "{" in route:
                pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^{}/]+)", re.escape(route))
                self.dynamic.append((ep.method, re.compile(pattern), ep))
            else:
                self.static[ep.method, route] = ep

    def find(self, method: str, path: str) -> tuple[api.Endpoint, dict[str, str]] | None:
        ep = self.static.get((method, path))
        if ep is not None:
            return ep, {}
        for ep_method, pattern, ep in self.dynamic:
            if ep_method == method and (m := pattern.fullmatch(path)):
                return ep, m.groupdict()
        return None


class Front:
    """What the name node listens with (``server.Front``): one ``_Connection`` per connection,
    *fallback* (aiohttp's protocol factory) for the connections handed over."""

    def __init__(
        self, application: web.Application, nn: NameNode, fallback: Callable[[], asyncio.Protocol]
    ) -> None:
        self.nn = nn
        self.routes = Routes(api.ENDPOINTS)
        self.durability = application[api.DURABILITY]
        self.metrics = application[metrics.REQUESTS]
        self.fallback = fallback
        self.connections: set[_Connection] = set()

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self)

    async def shutdown(self) -> None:
        """Let running requests finish (for up to 10 s), then close every connection."""
        running = [c.task for c in self.connections if c.task is not None]
        if running:
            await asyncio.wait(running, timeout=10.0)
        for conn in list(self.connections):
            conn.close()


class _Request:
    """A request whose head is read: its caller is known before any of its body is."""

    __slots__ = ("body", "ep", "keep_alive", "length", "match", "query", "started", "user")

    def __init__(
        self,
        ep: api.Endpoint,
        match: dict[str, str],
        query: dict[str, str],
        length: int,
        keep_alive: bool,
    ) -> None:
        self.ep, self.match, self.query, self.length = ep, match, query, length
        self.keep_alive = keep_alive
        self.user: User | None = None
        self.body = b""
        self.started = time.perf_counter()


class _Connection(asyncio.Protocol):
    def __init__(self, front: Front) -> None:
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.pending: _Request | None = None  # its head is read, its body not all yet
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
                request, authorization = parsed
                del self.buf[: end + 4]
                try:  # before reading any of the body, as aiohttp's route does
                    request.user = api.authenticate(self.front.nn, authorization, request.ep.access)
                except PydfsError as exc:
                    if request.length:  # its body, unread, would be taken for a request
                        request.keep_alive = False
                    self._answer_error(request, exc)
                    continue
                self.pending = request
            if len(self.buf) < request.length:
                return
            request.body = bytes(self.buf[: request.length])
            del self.buf[: request.length]
            self.pending = None
            self._serve(request)

    def _parse(self, head: bytes) -> tuple[_Request, str] | None:
        """What a request head asks for and its ``Authorization``, or None if it is aiohttp's
        to answer (anything unusual is, so that the two parsers never read a head two ways)."""
        if not _HEAD.fullmatch(head):
            return None
        line, _, fields = head.partition(b"\r\n")
        parts = line.split(b" ")
        if len(line) > MAX_REQUEST_LINE or len(parts) != 3 or parts[2] != b"HTTP/1.1":
            return None
        target = parts[1].decode("ascii")  # _HEAD: printable ASCII
        path, _, qs = target.partition("?")
        found = self.front.routes.find(parts[0].decode("ascii"), path)
        if found is None or "%" in path or "#" in qs or ";" in qs:
            return None
        ep, match = found
        length, authorization, keep_alive = -1, "", True
        for field in fields.split(b"\r\n") if fields else ():
            name, colon, value = field.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                return None
            name, value = name.lower(), value.strip(b" \t")
            if name == b"content-length":
                if length >= 0 or not value.isdigit() or len(value) > 18:
                    return None
                length = int(value)
            elif name == b"authorization":
                authorization = authorization or value.decode("latin-1")
            elif name == b"connection":
                tokens = value.lower()
                if b"upgrade" in tokens:
                    return None
                keep_alive = b"close" not in tokens
            elif name in (b"transfer-encoding", b"expect", b"upgrade"):
                return None
        if length > api.body_limit(ep):
            return None
        try:
            pairs = parse_qsl(qs, keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            return None
        query: dict[str, str] = {}
        for key, value_ in pairs:
            query.setdefault(key, value_)  # the first of repeated parameters, as aiohttp's .get
        return _Request(ep, match, query, max(length, 0), keep_alive), authorization

    def _answer_error(self, request: _Request, exc: PydfsError) -> None:
        self._send(request, exc.status, error_body(exc))

    def _serve(self, request: _Request) -> None:
        front = self.front
        durability = front.durability
        durability.in_flight += 1
        assert request.user is not None
        try:
            status, payload = (
                200,
                api.answer(
                    front.nn, request.ep, request.query, request.match, request.user, request.body
                ),
            )
        except PydfsError as exc:
            status, payload = exc.status, error_body(exc)
        except Exception:
            log.exception("%s %s failed", request.ep.method, request.ep.route)
            status, payload = _internal()
        if durability.store.dirty:
            self.task = asyncio.ensure_future(self._settle(request, status, payload))
            return
        durability.in_flight -= 1
        self._send(request, status, payload)

    async def _settle(self, request: _Request, status: int, payload: bytes) -> None:
        try:
            await self.front.durability.settle()
        except Exception:
            log.exception("%s %s: metadata not made durable", request.ep.method, request.ep.route)
            status, payload = _internal()
        self.task = None
        self._send(request, status, payload)
        self._resume()

    def _send(self, request: _Request, status: int, payload: bytes) -> None:
        transport = self.transport
        route = f"{wire.API}{request.ep.route}"
        if transport is None or transport.is_closing():
            status = metrics.CLIENT_GONE
        else:
            head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (
                status,
                _REASONS.get(status, b"Unknown"),
                len(payload),
            )
            if not request.keep_alive:
                head += b"Connection: close\r\n"
            transport.write(head + b"\r\n" + payload)
            if not request.keep_alive:
                self.close()
            self.idle_since = asyncio.get_running_loop().time()
        self.front.metrics.record(
            route, request.ep.method, status, time.perf_counter() - request.started
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


def _internal() -> tuple[int, bytes]:
    exc = internal_error()
    return exc.status, error_body(exc)
