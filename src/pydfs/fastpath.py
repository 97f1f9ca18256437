"""A server's own HTTP/1.1 protocol in front of aiohttp, for its hottest requests.

aiohttp's server, with its middlewares, spends about 100 µs of CPU on a small request before its
handler runs: several times what a stat costs the name node's namespace, or a 4 KiB block read a
data node. A role's ``Front`` says which requests it takes (``find``: by method, path, query
and body length) and hands them to the role's request pipeline (``pydfs.calls``), as aiohttp's
routes do: the same authentication on the head before any of the body is read, the same
answers, errors (``server.error_of``), request ids and request metrics.

Heads are parsed by llhttp (``httptools``), as strict as aiohttp's own parser (the same llhttp).
At the first request that is anything else (the web UI, ``/metrics``, a chunked body,
``Expect``, an upgrade, HTTP/1.0, a percent-encoded route, a head llhttp refuses) the
connection is handed, with every byte read so far, to aiohttp for the rest of its life:
whatever of HTTP the clients do not use keeps aiohttp's handling, and no head is ever read by
both parsers. A head over ``MAX_HEAD`` is refused here.

Every connection is accepted here, so the front keeps the deadlines (``server.Limits``) for a
client's head, its body, and an idle connection, and the cap on connections: past it, the
connection that has waited longest on its client is closed to make room (or, if every one is
being answered, the new one is refused).

Requests on one connection are answered in order, one at a time; pipelined ones wait in the
buffer. An answer that must wait (for the store, for durability) is made in the connection's one
task, started at its first such answer and reused for all the others: a task per request, with
its scheduling and its place in asyncio's set of every task, would cost each request more.
Reading pauses past ``PAUSE_AT`` bytes buffered behind a request that waits, and the next
request waits while the client does not read its answers (write back-pressure).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from http import HTTPStatus
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl

import httptools

from pydfs import metrics
from pydfs.calls import Answer, Pipeline, Request
from pydfs.errors import ProtocolError, PydfsError, Unavailable
from pydfs.log import REQUEST_ID, request_id
from pydfs.server import (
    DEFAULT_LIMITS,
    MAX_REQUEST_LINE,
    MIN_BODY_RATE,
    Limits,
    error_body,
    error_of,
)

log = logging.getLogger("pydfs.server")

MAX_HEAD = 64 * 1024  # a longer head is refused
PAUSE_AT = 1 << 20  # bytes buffered behind a running request before reading pauses

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_AIOHTTPS = frozenset({b"transfer-encoding", b"expect", b"upgrade"})  # heads that go to aiohttp

E = TypeVar("E")


class Routes(Generic[E]):
    """Endpoints by method and route template (``/v1/...``), with aiohttp's reading of
    ``{name}`` segments."""

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


class _Request(Request):
    __slots__ = ("keep_alive",)
    keep_alive: bool


class Front:
    """What a server listens with (``server.Front``): one ``_Connection`` per connection,
    *fallback* (aiohttp's protocol factory) for the connections handed over. A role subclasses
    it with ``find``: the requests of its *pipeline* it answers here."""

    def __init__(
        self,
        pipeline: Pipeline,
        requests: metrics.RequestMetrics,
        fallback: Callable[[], asyncio.Protocol],
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.pipeline = pipeline
        self.metrics = requests
        self.fallback = fallback
        self.limits = limits
        # how often a connection's deadline is looked at, at least: never later than it is due
        self.tick = min(limits.head_timeout, limits.body_timeout, limits.keepalive_timeout)
        self.connections: set[_Connection] = set()
        self.handed = 0  # connections handed to aiohttp, still open
        self.workers: set[asyncio.Task[None]] = set()  # connections' tasks, client gone or not
        self.closing = False

    def find(
        self, method: str, path: str, query: dict[str, str], length: int
    ) -> tuple[Any, str, dict[str, str]] | None:
        """The endpoint, route template and path parameters of a request this front answers
        (*length*: its ``Content-Length``, -1 if none), or None for aiohttp to."""
        raise NotImplementedError

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self)

    def _make_room(self) -> bool:
        """At the cap, close the connection that has waited longest on its client (for a head,
        a body, or its next request); False if every one is being answered."""
        if len(self.connections) + self.handed < self.limits.max_connections:
            return True
        waiting = [conn for conn in self.connections if not conn.busy]
        if not waiting:
            return False
        min(waiting, key=lambda conn: conn.since).close()
        return True

    async def shutdown(self) -> None:
        """Close the connections not being answered, let the others finish their answers (for
        up to 10 s, their pipelined requests included), then close every connection."""
        self.closing = True
        for conn in list(self.connections):
            if not conn.busy:
                conn.close()
        if self.workers:
            await asyncio.wait(self.workers, timeout=10.0)
        for conn in list(self.connections):
            conn.close()


class _Head:
    """What llhttp (``httptools``) reads of one request head, and whether it is complete."""

    __slots__ = (
        "complete",
        "fields",
        "keep_alive",
        "length",
        "method",
        "parser",
        "to_aiohttp",
        "url",
        "version",
    )

    def __init__(self) -> None:
        self.url = b""
        self.fields: dict[str, str] = {}
        self.length = -1
        self.to_aiohttp = False  # something of HTTP the front leaves to aiohttp
        self.complete = False
        self.method, self.version, self.keep_alive = b"", "", False
        # Dropped once the head is read: it holds this object's methods, and without that
        # cycle both are freed as soon as the request is, not by the cycle collector.
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length":
            self.to_aiohttp |= self.length >= 0  # llhttp refuses two that differ
            self.length = int(value)  # llhttp checked: digits, no overflow
        elif name in _AIOHTTPS or (name == b"connection" and b"upgrade" in value.lower()):
            self.to_aiohttp = True
        else:  # the first of repeated fields, as aiohttp's .get
            self.fields.setdefault(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        parser = self.parser  # asked now: a message that ends here resets them
        assert parser is not None
        self.method, self.version = parser.get_method(), parser.get_http_version()
        self.keep_alive = parser.should_keep_alive()
        self.complete = True


class _Connection(asyncio.Protocol):
    def __init__(self, front: Front) -> None:
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.head: _Head | None = None  # a head being read
        self.fed = 0  # bytes of buf the head's parser has had
        self.pending: _Request | None = None  # its head is read, its body not all yet
        self.busy = False  # an answer is being made (by the worker)
        self.job: Coroutine[Any, Any, None] | None = None  # the worker's next
        self.worker: asyncio.Task[None] | None = None  # started at the first job
        self.idle: asyncio.Future[bool] | None = None  # the worker waits on it for a job
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
        if not self.busy and not self.blocked:
            self._next()
        elif len(self.buf) > PAUSE_AT and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def pause_writing(self) -> None:
        self.blocked = True

    def resume_writing(self) -> None:
        self.blocked = False
        if not self.busy:
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
        if self.idle is not None:  # the worker ends
            self.idle.set_result(False)
            self.idle = None

    def _check(self) -> None:
        """Close the connection if its client is late, else look again when it is due (or
        after ``Front.tick``, should the connection go on to a wait with a nearer deadline)."""
        if self.transport is None:
            return
        limits = self.front.limits
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = now + self.front.tick  # an answer is being made: the client is not waited on
        if self.busy:
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
        while self.transport is not None and not self.busy and not self.blocked:
            request = self.pending
            if request is None:
                if not self.buf:
                    return
                head = self._read_head()
                if head is None:
                    return
                request = self._request(head)
                if request is None:
                    self._hand_off()
                    return
                del self.buf[: self.fed]  # the head
                token = REQUEST_ID.set(request.id)
                try:  # before reading any of the body, as aiohttp's routes do
                    admitting = self.front.pipeline.admit(request)
                    if admitting is not None:  # the caller is checked against the store
                        self._start(self._admit(request, admitting))
                        return
                except Exception as exc:
                    self._refuse_admission(request, exc)
                    continue
                finally:
                    REQUEST_ID.reset(token)
                self._admitted(request)
            length = request.length or 0
            if len(self.buf) < length:
                return
            request.body = bytes(self.buf[:length])
            del self.buf[:length]
            self.pending = None
            self._serve(request)

    def _read_head(self) -> _Head | None:
        """Feed llhttp what came of the head; the head once it is whole (its ``fed`` bytes
        begin the buffer), else None (more to come, or the connection was refused or handed
        over)."""
        head = self.head
        if head is None:
            head = self.head = _Head()
            self.fed = 0
        assert head.parser is not None
        end = self.buf.find(b"\r\n\r\n", max(self.fed - 3, 0))
        stop = len(self.buf) if end < 0 else end + 4
        with memoryview(self.buf) as view:
            try:
                head.parser.feed_data(view[self.fed : stop])
            except httptools.HttpParserError:  # aiohttp's llhttp refuses it the same way
                head.to_aiohttp = True
        self.fed = stop
        if head.to_aiohttp:
            self._hand_off()
            return None
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self._refuse(ProtocolError("malformed request: head too long"))
            return None
        self.head = None
        head.parser = None
        if not head.complete:  # cannot be: llhttp has had the blank line
            self._hand_off()
            return None
        return head

    def _request(self, head: _Head) -> _Request | None:
        """What a whole head asks for, or None if it is aiohttp's to answer."""
        if head.version != "1.1" or len(head.url) > MAX_REQUEST_LINE:
            return None
        target = head.url.decode("ascii")  # llhttp: printable ASCII
        path, _, qs = target.partition("?")
        if "%" in path or "#" in qs or ";" in qs:
            return None
        query = _query(qs)
        if query is None:
            return None
        method = head.method.decode("ascii")
        try:
            found = self.front.find(method, path, query, head.length)
        except Exception:  # a query it cannot read: aiohttp's route answers it
            return None
        if found is None:
            return None
        endpoint, route, match = found
        fields = head.fields
        length = None if head.length < 0 else head.length
        rid = request_id(fields.get("x-request-id"))
        request = _Request(endpoint, route, method, match, query, fields, length, rid)
        request.keep_alive = head.keep_alive
        return request

    def _admitted(self, request: _Request) -> None:
        self.pending = request
        if len(self.buf) < (request.length or 0):  # the body's deadline runs from now
            self.since = asyncio.get_running_loop().time()

    def _refuse_admission(self, request: _Request, exc: Exception) -> None:
        if request.length:  # its body, unread, would be taken for a request
            request.keep_alive = False
        self._send(request, failure(request, exc))

    async def _admit(self, request: _Request, admitting: Awaitable[None]) -> None:
        REQUEST_ID.set(request.id)  # in the worker's own context
        try:
            await admitting
        except Exception as exc:
            self.busy = False
            self._refuse_admission(request, exc)
        else:
            self.busy = False
            self._admitted(request)
        self._resume()

    def _start(self, job: Coroutine[Any, Any, None]) -> None:
        """Have the worker run *job*, which answers a request and goes on with the next."""
        self.busy = True
        self.job = job
        if self.idle is not None:
            self.idle.set_result(True)
            self.idle = None
        elif self.worker is None:  # none yet, or it ended with the server's shutdown
            self.worker = asyncio.get_running_loop().create_task(self._work())
            self.front.workers.add(self.worker)
            self.worker.add_done_callback(self.front.workers.discard)

    async def _work(self) -> None:
        """The connection's task: runs its jobs, one at a time, until it closes (a job given
        is always run, so that no coroutine is left unawaited)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                job, self.job = self.job, None
                if job is not None:
                    try:
                        await job
                    except Exception:  # a defect: the connection's state cannot be trusted
                        log.exception("answering a request failed")
                        self.busy = False
                        self.close()
                    continue
                if self.transport is None or self.front.closing:
                    return
                self.idle = loop.create_future()
                if not await self.idle:
                    return
        finally:  # ended, or cancelled as the loop stops
            self.worker = self.idle = None
            if self.job is not None:
                self.job.close()
                self.job = None

    def _serve(self, request: _Request) -> None:
        token = REQUEST_ID.set(request.id)
        try:
            try:
                answer = self.front.pipeline.serve(request)
            except Exception as exc:
                answer = failure(request, exc)
            if isinstance(answer, Answer):
                self._send(request, answer)
            else:
                self._start(self._finish(request, answer))
        finally:
            REQUEST_ID.reset(token)

    async def _finish(self, request: _Request, pending: Awaitable[Answer]) -> None:
        REQUEST_ID.set(request.id)  # in the worker's own context
        try:
            answer = await pending
        except Exception as exc:
            answer = failure(request, exc)
        self.busy = False
        self._send(request, answer)
        self._resume()

    def _send(self, request: _Request, answer: Answer) -> None:
        transport = self.transport
        status = answer.status
        if answer.file is not None:  # not for ranges a front takes, small ones: read it here
            part = answer.file
            with part.file as f:
                answer = answer._replace(body=os.pread(f.fileno(), part.length, part.start))
            part.sent()
        if transport is None or transport.is_closing():
            status = metrics.CLIENT_GONE
        else:
            # A server stopping ends each connection with the answer it is making.
            keep_alive = request.keep_alive and not self.front.closing
            transport.write(_response(answer, keep_alive, request.id))
            if not keep_alive:
                self.close()
            self.answered = True
            self.since = asyncio.get_running_loop().time()
        self.front.metrics.record(
            request.route, request.method, status, time.perf_counter() - request.started
        )

    def _refuse(self, exc: PydfsError) -> None:
        """Answer a connection no request of which can be read with *exc*, and close it."""
        if self.transport is not None:
            answer = Answer(exc.status, error_body(exc))
            self.transport.write(_response(answer, keep_alive=False, request_id=None))
        self.close()

    def _hand_off(self) -> None:
        """Give the connection, and every byte read from it, to aiohttp."""
        transport, data = self.transport, bytes(self.buf)
        assert transport is not None
        self._forget()
        self.buf = bytearray()
        self.head = None
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


def _response(answer: Answer, keep_alive: bool, request_id: str | None) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
        answer.status,
        _REASONS.get(answer.status, b"Unknown"),
        answer.content_type.encode("latin-1"),
        len(answer.body),
    )
    if answer.headers:
        head += "".join(f"{name}: {value}\r\n" for name, value in answer.headers.items()).encode(
            "latin-1"
        )
    if request_id is not None:
        head += b"X-Request-Id: %s\r\n" % request_id.encode("ascii")
    if not keep_alive:
        head += b"Connection: close\r\n"
    return b"".join((head, b"\r\n", answer.body))


def _query(qs: str) -> dict[str, str] | None:
    """A query string's parameters, the first of repeated ones (as aiohttp's ``.get``); None if
    it does not decode."""
    if "%" in qs or "+" in qs:
        try:
            pairs = parse_qsl(qs, keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            return None
    else:  # nothing to unquote: parse_qsl's reading, at a fraction of its cost
        pairs = [(key, value) for key, _, value in (p.partition("=") for p in qs.split("&") if p)]
    query: dict[str, str] = {}
    for key, value in pairs:
        query.setdefault(key, value)
    return query


def failure(request: Request, exc: Exception) -> Answer:
    """The answer to *request*, which raised *exc* (``server.error_of``)."""
    error = error_of(exc, request.method, request.route)
    return Answer(error.status, error_body(error))
