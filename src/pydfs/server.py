"""Shared aiohttp scaffolding for the name node and data nodes.

Errors map to HTTP statuses in exactly one place (``error_of``), for aiohttp's routes (the
``_errors`` middleware) and the fast path alike: a ``PydfsError`` becomes its status and a coded
``ErrorBody`` (with the request id); anything else is logged with its traceback and answered
with a bare ``internal`` error, never the traceback itself. What aiohttp's HTTP parser refuses
before any handler runs gets the same coded body (``_Handler``).

A role's API is its request pipeline (``pydfs.calls``); ``add_endpoints`` routes aiohttp's
requests to it, as the fast path does its own.

A client gets a deadline for each request (``Limits``): the fast path (``pydfs.fastpath``)
keeps it for its connections, and for a connection it handed to aiohttp the keep-alive timeout
bounds the wait for a head, and ``_slow_bodies`` the wait for a body.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

from aiohttp import web

from pydfs import log as request_log
from pydfs import paths, wire
from pydfs.calls import Answer, FileRange, Pipeline, Request
from pydfs.errors import InternalError, InvalidArgument, ProtocolError, PydfsError

log = logging.getLogger("pydfs.server")
T = TypeVar("T")

# The longest request line a server reads: room for any legal path with every byte
# percent-encoded in a query, and for the rest of the URL. (aiohttp's default, 8190 bytes, let
# its HTTP parser refuse a legal path of non-ASCII names with a plain-text 400 that no handler
# or middleware ever sees, so such a file could be written but never stat'ed or read.)
MAX_REQUEST_LINE = 3 * paths.MAX_PATH_BYTES + 4096
MIN_BODY_RATE = 1024  # bytes/s: each of them earns a request body a second beyond body_timeout


class Limits(NamedTuple):
    """How long a server waits on its clients, and how many it holds at once (the options of
    the same names of ``NameNodeConfig`` and ``DataNodeConfig``)."""

    head_timeout: float = 20.0  # a request head, from connecting or from its first byte
    body_timeout: float = 20.0  # a body, plus a second for each MIN_BODY_RATE bytes received
    keepalive_timeout: float = 30.0  # an idle connection, between requests
    max_connections: int = 4096  # at most half the open-file limit

    @classmethod
    def of(cls, config: object) -> Limits:
        return cls(*(getattr(config, name) for name in cls._fields))

    def within(self, files: int) -> Limits:
        """These limits, with at most half of *files* (the open-file limit) as connections:
        the rest is for the server's own files and connections."""
        if self.max_connections <= files // 2:
            return self
        log.info("max_connections lowered to %d: half the open-file limit", files // 2)
        return self._replace(max_connections=files // 2)


DEFAULT_LIMITS = Limits()


def error_body(exc: PydfsError) -> bytes:
    """The JSON an error is answered with, by either server (aiohttp's, the fast path), naming
    the request being answered, if any."""
    return wire.encode(wire.ErrorBody(exc.code, exc.message, request_log.REQUEST_ID.get()))


def error_of(exc: BaseException, method: str, route: str) -> PydfsError:
    """What the caller of a request (*method* and *route*, for the log) that raised *exc* is
    told: its ``PydfsError``, aiohttp's refusals as coded errors, anything else as a bare
    internal error, logged with its traceback."""
    if isinstance(exc, PydfsError):
        return exc
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return ProtocolError("request body too large")
    if isinstance(exc, web.RequestPayloadError):  # aiohttp could not read the body (its encoding)
        return ProtocolError(f"malformed request body: {exc}")
    if isinstance(exc, web.HTTPException):
        return _http_error(exc)
    log.error("%s %s failed", method, route, exc_info=exc)
    return internal_error()


def internal_error() -> InternalError:
    """What a caller is told of an unexpected failure (its traceback goes to the log)."""
    return InternalError("internal error; see the server log")


def error_response(exc: PydfsError) -> web.Response:
    return web.Response(status=exc.status, body=error_body(exc), content_type="application/json")


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(error_of(exc, request.method, request.path))
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception as exc:
        return error_response(error_of(exc, request.method, request.path))


def _http_error(exc: web.HTTPException) -> PydfsError:
    from pydfs import errors

    if exc.status == 404:
        return errors.NotFound(f"no such endpoint: {exc.reason}")
    if exc.status == 405:
        return ProtocolError("method not allowed")
    return ProtocolError(exc.reason)


class _Handler(web.RequestHandler):
    """aiohttp's protocol, whose own answers (a head or body its parser refuses, a handler that
    failed outside the error middleware) carry the coded JSON body of every other error."""

    __slots__ = ()

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        error: PydfsError
        if status >= 500:
            if self.transport is not None:  # else the client went away: nothing to tell
                log.error("%s %s failed", request.method, request.path, exc_info=exc)
            error = internal_error()
        else:
            log.debug("malformed request: %s", message or exc)
            error = ProtocolError(f"malformed request: {message or HTTPStatus(status).phrase}")
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was begun: no error can follow it")
        response = error_response(error)
        response.force_close()
        return response


def _slow_bodies(limits: Limits) -> Any:
    """A middleware that closes the connection of a request whose body does not come in time:
    within ``body_timeout``, plus a second per ``MIN_BODY_RATE`` bytes received."""

    @web.middleware
    async def deadline(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.body_exists:
            return await handler(request)
        content, loop = request.content, asyncio.get_running_loop()
        start = loop.time()
        timer: asyncio.TimerHandle | None = None

        def check() -> None:
            nonlocal timer
            if content.is_eof():
                return
            due = start + limits.body_timeout + content.total_bytes / MIN_BODY_RATE
            if loop.time() < due:
                timer = loop.call_at(due, check)
            elif request.transport is not None:
                log.debug("closing a connection whose request body is too slow")
                request.transport.close()

        timer = loop.call_at(start + limits.body_timeout, check)
        try:
            return await handler(request)
        finally:
            timer.cancel()  # the last one set

    return deadline


def make_app(client_max_size: int = wire.MAX_REPORT_BODY) -> web.Application:
    app = web.Application(
        middlewares=[request_log.middleware(), _errors], client_max_size=client_max_size
    )
    app.router.add_get(f"{wire.API}/health", _health)
    return app


def add_endpoints(
    app: web.Application, pipeline: Pipeline, endpoints: list[tuple[str, str, Any]]
) -> list[Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Route each of *endpoints* (method, route template, the role's endpoint) to *pipeline*;
    returns the handlers."""
    handlers = []
    for method, route, endpoint in endpoints:
        handler = _adapter(pipeline, endpoint, route)
        app.router.add_route(method, route, handler)
        handlers.append(handler)
    return handlers


def _adapter(
    pipeline: Pipeline, endpoint: Any, route: str
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        rid = request_log.REQUEST_ID.get() or request_log.request_id(None)
        call = Request(
            endpoint,
            route,
            request.method,
            request.match_info,
            request.query,
            request.headers,
            request.content_length,
            rid,
        )
        admitting = pipeline.admit(call)  # before the body is read
        if admitting is not None:
            await admitting
        limit = pipeline.limit(call)
        if limit is None:
            call.read = request.content.readexactly
        else:
            call.body = await read_body(request, limit)
        answer = pipeline.serve(call)
        if not isinstance(answer, Answer):
            answer = await answer
        if answer.file is not None:
            return await _send_file(request, answer, answer.file)
        return web.Response(
            status=answer.status,
            body=answer.body,
            content_type=answer.content_type,
            headers=answer.headers,
        )

    return handle


async def _send_file(request: web.Request, answer: Answer, part: FileRange) -> web.StreamResponse:
    """Answer with *part* of a file: sendfile when the loop has it, else 1 MiB reads."""
    with part.file as f:
        resp = web.StreamResponse(status=answer.status, headers=answer.headers)
        resp.content_type = answer.content_type
        resp.content_length = part.length
        rid = request_log.REQUEST_ID.get()
        if rid is not None:
            resp.headers[request_log.HEADER] = rid
        await resp.prepare(request)
        try:
            await _send(request, resp, f, part.start, part.length)
        except BaseException:
            # The status line is gone already: all a reader can be told is a cut connection.
            if request.transport is not None:
                request.transport.close()
            raise
    part.sent()
    await resp.write_eof()
    return resp


async def _send(
    request: web.Request, resp: web.StreamResponse, f: Any, start: int, count: int
) -> None:
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("reader went away")
    if count == 0:
        return
    try:
        await asyncio.get_running_loop().sendfile(transport, f, start, count)
        return
    except NotImplementedError:
        pass
    f.seek(start)
    while count > 0:
        data = f.read(min(count, 1 << 20))
        if not data:
            raise ConnectionResetError("block file shrank while being read")
        await resp.write(data)
        count -= len(data)


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=wire.encode(obj), status=status, content_type="application/json")


async def read_body(request: web.Request, limit: int = wire.MAX_JSON_BODY) -> bytes:
    """The request body, refused if over *limit* bytes before it is read (or, sent without a
    length, as soon as it grows past the limit)."""
    if request.content_length is not None and request.content_length > limit:
        raise ProtocolError(f"request body too large (limit {limit} bytes)")
    body = bytearray()
    async for chunk in request.content.iter_chunked(256 * 1024):
        body += chunk
        if len(body) > limit:
            raise ProtocolError(f"request body too large (limit {limit} bytes)")
    return bytes(body)


def decode_body(body: bytes, type: type[T]) -> T:
    try:
        return wire.decode(body, type)
    except UnicodeDecodeError as exc:  # msgspec's error for invalid UTF-8 inside a JSON string
        raise ProtocolError(f"malformed {type.__name__}: not UTF-8 ({exc.reason})") from None


def lock_data_dir(data_dir: Path, role: str) -> int:
    """Hold an exclusive lock on *data_dir* for this process's life: two servers must never
    share one directory (two name nodes on one database would corrupt it)."""
    import fcntl

    from pydfs.errors import Conflict

    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / f"{role}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Conflict(f"{data_dir} is in use by another {role}") from None
    return fd


def write_url_file(path: Path, url: str) -> None:
    """Publish the address a server really bound, atomically, for harnesses and operators."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(url + "\n")
    os.replace(tmp, path)


class Front(Protocol):
    """A protocol factory to listen with in aiohttp's stead (given aiohttp's own, to hand
    connections to), which closes its connections at shutdown."""

    def __call__(self) -> asyncio.Protocol: ...

    async def shutdown(self) -> None: ...


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    advertise: str | None,
    url_file: Path | None,
    after_bind: Callable[[str], Awaitable[None]] | None = None,
    tls: ssl.SSLContext | None = None,
    front: Callable[[Callable[[], asyncio.Protocol], Limits], Front],
    limits: Limits,
) -> None:
    """Bind, announce the real URL, run until SIGTERM or SIGINT, then shut down gracefully.
    Connections are accepted by the protocol *front* makes, given aiohttp's and the limits."""
    import resource

    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    files = 1 << 20 if files == resource.RLIM_INFINITY else files
    limits = limits.within(files)
    # asyncio accepts up to a backlog of connections at once, before the front sees any: with
    # the cap, an eighth of the open-file limit leaves room for a burst
    backlog = min(1024, max(16, files // 8))
    app.middlewares.append(_slow_bodies(limits))
    options: dict[str, Any] = {
        "access_log": None,
        "max_line_size": MAX_REQUEST_LINE,
        "keepalive_timeout": limits.keepalive_timeout,
    }
    runner = web.AppRunner(app, handle_signals=False, **options)
    await runner.setup()
    loop = asyncio.get_running_loop()
    aiohttp_server = runner.server
    assert aiohttp_server is not None
    listener = front(lambda: _Handler(aiohttp_server, loop=loop, **options), limits)
    bound = await loop.create_server(
        listener, host, port, reuse_address=True, backlog=backlog, ssl=tls
    )
    sockets = bound.sockets
    bound_host, bound_port = sockets[0].getsockname()[:2]
    url = (
        advertise
        or f"{'https' if tls else 'http'}://"
        f"{_url_host(host if host not in ('0.0.0.0', '::') else bound_host)}:{bound_port}"
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watchdog = asyncio.ensure_future(_watch_parent(stop))
    try:
        if after_bind is not None:
            await after_bind(url)
        if url_file is not None:
            write_url_file(url_file, url)
        log.info("listening on %s", url)
        await stop.wait()
        log.info("shutting down")
    finally:
        watchdog.cancel()
        bound.close()
        await listener.shutdown()
        await runner.cleanup()
        if url_file is not None:
            url_file.unlink(missing_ok=True)


async def _watch_parent(stop: asyncio.Event) -> None:
    """A node started by a harness (``PYDFS_PARENT_PID``) stops when the harness process dies,
    even by SIGKILL, instead of living on as an orphan that holds its ports and data.
    (``PR_SET_PDEATHSIG`` will not do: it fires when the spawning *thread* ends.)"""
    parent = os.environ.get("PYDFS_PARENT_PID")
    if not parent:
        return
    while os.getppid() == int(parent):  # noqa: ASYNC110 (no event announces a parent death)
        await asyncio.sleep(1.0)
    log.warning("parent process %s is gone: stopping", parent)
    stop.set()


def server_tls(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The TLS context of a server given a PEM certificate (chain) and key; None: plain HTTP."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise InvalidArgument("TLS needs both tls_cert and tls_key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgument(f"cannot load TLS certificate {cert} or key {key}: {exc}") from None
    return context


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def run(main: Awaitable[None], *, use_uvloop: bool = True) -> None:
    """Run a server coroutine, on uvloop when it is installed and wanted (uvloop has no
    ``loop.sendfile``, so data nodes, which serve blocks with it, run on asyncio's own loop)."""
    runner = asyncio.Runner()
    if use_uvloop:
        try:
            import uvloop

            runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        except ImportError:
            pass
    with runner:
        runner.run(main)  # type: ignore[arg-type]
