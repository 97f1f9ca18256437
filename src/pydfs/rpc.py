"""The one outgoing HTTP caller, used by the client and by data nodes.

It owns the translation of foreign errors: connection errors become ``Unavailable`` (naming the
URL), timeouts become ``Timeout``, and a server's ``ErrorBody`` becomes the matching
``pydfs.errors`` class. Only ``Unavailable`` is retried, and only for idempotent calls.

``Rpc`` calls over a shared aiohttp session. ``BlockingRpc`` makes the same calls with the
standard library's ``http.client``: a one-shot CLI command that only asks the name node
something (``ls``, ``stat``, ``mkdir``...) then never imports aiohttp, whose import alone costs
more than the rest of the command. aiohttp is imported only when a session is made.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload
from urllib.parse import urlencode, urlsplit

from pydfs import errors, wire

if TYPE_CHECKING:
    import http.client
    import ssl

    import aiohttp

log = logging.getLogger("pydfs.rpc")
T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0


def new_session(
    timeout: aiohttp.ClientTimeout | None = None, *, ca: str | os.PathLike[str] | None = None
) -> aiohttp.ClientSession:
    """A session for every call of one process; *ca* is the bundle that verifies HTTPS servers
    (else the system's trust store). Certificates are always verified."""
    import aiohttp

    if timeout is None:
        timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)
    connector = aiohttp.TCPConnector(
        limit=64, limit_per_host=32, ttl_dns_cache=300, ssl=client_ssl(ca)
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
    )


def client_ssl(ca: str | os.PathLike[str] | None) -> ssl.SSLContext | bool:
    import ssl

    if ca is None:
        return True
    try:
        return ssl.create_default_context(cafile=os.fspath(ca))
    except (OSError, ssl.SSLError) as exc:
        raise errors.InvalidArgument(f"cannot load the CA bundle {ca}: {exc}") from None


async def raise_for_error(resp: aiohttp.ClientResponse) -> None:
    """Turn a non-2xx answer into the pydfs error its body names."""
    if resp.status >= 300:
        raise error_from(resp.status, await resp.read(), str(resp.url.origin()))


def error_from(status: int, body: bytes, origin: str) -> errors.PydfsError:
    """The pydfs error a non-2xx answer's body names."""
    try:
        err = wire.decode(body, wire.ErrorBody)
    except errors.ProtocolError:
        if status in (502, 503, 504):
            return errors.Unavailable(f"{origin} answered {status}")
        return errors.ProtocolError(f"{origin} answered {status} without an error body")
    return errors.from_code(err.code, err.message)


def translate(exc: BaseException, url: str) -> errors.PydfsError:
    """Map an aiohttp/OS exception raised while talking to *url* onto the error tree."""
    import ssl

    import aiohttp

    if isinstance(exc, errors.PydfsError):
        return exc
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return errors.Unavailable(f"TLS with {url} failed: {exc}")
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return errors.Timeout(f"{url} did not answer in time")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return errors.Unavailable(f"TLS with {url} failed: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return errors.Unavailable(f"cannot reach {url}: {exc.os_error.strerror or exc.os_error}")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return errors.Unavailable(f"connection to {url} failed: {exc.__class__.__name__}")
    return errors.InternalError(f"unexpected {exc.__class__.__name__} talking to {url}")


class Rpc:
    """JSON calls to one server (the name node) over a shared session."""

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        retries: int = 2,
        backoff: float = 0.2,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.retries = retries
        self.backoff = backoff
        self.headers = dict(headers or {})

    @overload
    async def call(
        self,
        method: str,
        route: str,
        body: Any = ...,
        *,
        reply: type[T],
        params: Mapping[str, str] | None = ...,
    ) -> T: ...

    @overload
    async def call(
        self,
        method: str,
        route: str,
        body: Any = ...,
        *,
        reply: None = ...,
        params: Mapping[str, str] | None = ...,
    ) -> None: ...

    async def call(
        self,
        method: str,
        route: str,
        body: Any = None,
        *,
        reply: type[T] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> T | None:
        url = f"{self.base_url}{wire.API}{route}"
        data = None if body is None else wire.encode(body)
        headers = {**self.headers, "Content-Type": "application/json"} if data else self.headers
        attempts = 1 + (self.retries if method == "GET" else 0)
        for attempt in range(attempts):
            try:
                async with self.session.request(
                    method, url, data=data, params=params, headers=headers
                ) as resp:
                    await raise_for_error(resp)
                    raw = await resp.read()
                return None if reply is None else wire.decode(raw, reply)
            except errors.PydfsError as exc:
                if not isinstance(exc, errors.Unavailable) or attempt == attempts - 1:
                    raise
            except Exception as exc:
                err = translate(exc, self.base_url)
                if not isinstance(err, errors.Unavailable) or attempt == attempts - 1:
                    raise err from exc
            await asyncio.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")


class BlockingRpc:
    """``Rpc``'s calls over one keep-alive ``http.client`` connection, for one-shot commands.

    Each call blocks the event loop while it waits: right for a CLI command that has nothing
    else to do, wrong for a server or an application (use ``Rpc``)."""

    def __init__(
        self,
        base_url: str,
        *,
        ca: str | os.PathLike[str] | None = None,
        retries: int = 2,
        backoff: float = 0.2,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._url = urlsplit(self.base_url)
        self.ca = ca
        self.retries = retries
        self.backoff = backoff
        self.headers = dict(headers or {})
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        import http.client

        if self._conn is None:
            host, port = self._url.hostname or "", self._url.port
            if self._url.scheme == "https":
                context = client_ssl(self.ca)
                self._conn = http.client.HTTPSConnection(
                    host,
                    port,
                    timeout=READ_TIMEOUT,
                    context=None if context is True else context,  # type: ignore[arg-type]
                )
            else:
                self._conn = http.client.HTTPConnection(host, port, timeout=READ_TIMEOUT)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def call(
        self,
        method: str,
        route: str,
        body: Any = None,
        *,
        reply: type[T] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        target = f"{self._url.path}{wire.API}{route}"
        if params:
            target += "?" + urlencode(params)
        data = None if body is None else wire.encode(body)
        headers = {**self.headers, "Content-Type": "application/json"} if data else self.headers
        attempts = 1 + (self.retries if method == "GET" else 0)
        for attempt in range(attempts):
            try:
                status, raw = self._exchange(method, target, data, headers)
                if status >= 300:
                    raise error_from(status, raw, self.base_url)
                return None if reply is None else wire.decode(raw, reply)
            except errors.PydfsError as exc:
                if not isinstance(exc, errors.Unavailable) or attempt == attempts - 1:
                    raise
            except OSError as exc:
                self.close()
                err = _translate_os(exc, self.base_url)
                if not isinstance(err, errors.Unavailable) or attempt == attempts - 1:
                    raise err from exc
            await asyncio.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def _exchange(
        self, method: str, target: str, data: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        import http.client

        for reuse in (True, False):
            conn = self._connection()
            try:
                conn.request(method, target, body=data, headers=dict(headers))
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()  # a kept-alive connection the server closed: once more, afresh
                if not reuse:
                    raise
            except http.client.HTTPException as exc:
                self.close()
                raise errors.ProtocolError(f"{self.base_url} sent a bad answer: {exc}") from None
        raise AssertionError("unreachable")


def _translate_os(exc: OSError, url: str) -> errors.PydfsError:
    import socket
    import ssl

    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return errors.Unavailable(f"TLS with {url} failed: {exc}")
    if isinstance(exc, socket.timeout | TimeoutError):
        return errors.Timeout(f"{url} did not answer in time")
    if isinstance(exc, ConnectionError | socket.gaierror) or exc.errno is not None:
        return errors.Unavailable(f"cannot reach {url}: {exc.strerror or exc}")
    return errors.Unavailable(f"connection to {url} failed: {exc.__class__.__name__}")
