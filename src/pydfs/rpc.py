"""The one outgoing HTTP caller, used by the client and by data nodes.

It owns the translation of foreign errors: connection errors become ``Unavailable`` (naming the
URL), timeouts become ``Timeout``, and a server's ``ErrorBody`` becomes the matching
``pydfs.errors`` class. Only ``Unavailable`` is retried, and only for idempotent calls.

JSON calls to the name node go over ``http1``, a lean HTTP/1.1 client (``Rpc``: a pool of
kept-alive connections on the event loop), so that a one-shot CLI command that only asks the
name node something (``ls``, ``stat``, ``mkdir``...) never imports aiohttp, whose import alone
costs more than the rest of the command. Block data streams over aiohttp (``new_session``,
``raise_for_error``, ``translate``); aiohttp is imported only when a session is made. A block or
range that fits in one body of at most a chunk goes over ``Links``, ``http1`` pools to each
data node, instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload
from urllib.parse import urlencode, urlsplit

from pydfs import errors, http1, wire

if TYPE_CHECKING:
    import ssl

    import aiohttp

log = logging.getLogger("pydfs.rpc")
T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
JSON = "application/json"


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
    """JSON calls to one server (the name node) over a small pool of kept-alive connections;
    concurrent calls each take one of their own. ``close()`` closes them."""

    def __init__(
        self,
        base_url: str,
        *,
        ca: str | os.PathLike[str] | None = None,
        retries: int = 2,
        backoff: float = 0.2,
        headers: Mapping[str, str] | None = None,
        connections: int = 32,
        call_timeout: float | None = None,
    ) -> None:
        """*call_timeout*: seconds a call may take, retries included (None: no limit but the
        connection's own timeouts)."""
        self.base_url = base_url.rstrip("/")
        self.call_timeout = call_timeout
        self.retries = retries
        self.backoff = backoff
        self.headers = dict(headers or {})
        self._prefix = urlsplit(self.base_url).path + wire.API
        self._pool = http1.Pool(
            self.base_url,
            self.headers,
            ssl_context=tls_context(self.base_url, ca),
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=READ_TIMEOUT,
            size=connections,
        )

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
        target = f"{self._prefix}{route}?{urlencode(params)}" if params else self._prefix + route
        data = None if body is None else wire.encode(body)
        attempts = 1 + (self.retries if method == "GET" else 0)
        try:
            async with asyncio.timeout(self.call_timeout) as limit:
                for attempt in range(attempts):
                    try:
                        status, raw, _ = await self._pool.request(method, target, data, JSON)
                        if status >= 300:
                            raise error_from(status, raw, self.base_url)
                    except errors.Unavailable:
                        if attempt == attempts - 1:
                            raise
                        await asyncio.sleep(self.backoff * 2**attempt)
                        continue
                    return None if reply is None else wire.decode(raw, reply)
        except TimeoutError:
            if not limit.expired():
                raise
            raise errors.Timeout(
                f"{self.base_url} did not answer within {self.call_timeout:g} s"
            ) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._pool.close()


class Links:
    """Kept-alive lean connections to each data node (``http1.Pool``), for blocks and ranges
    that fit in one body of at most a chunk: aiohttp's client (``new_session``) costs 150-200 µs
    of CPU per request, three times as much, and small files are nothing but such requests."""

    def __init__(self, ca: str | os.PathLike[str] | None, stall_timeout: float) -> None:
        self.ca = ca
        self.stall_timeout = stall_timeout
        self._pools: dict[str, tuple[http1.Pool, str]] = {}

    async def request(
        self,
        url: str,
        method: str,
        route: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> http1.Answer:
        """*route* (below ``wire.API``) on the node at *url*; an error status raises."""
        known = self._pools.get(url)
        if known is None:
            pool = http1.Pool(
                url,
                {},
                ssl_context=tls_context(url, self.ca),
                connect_timeout=self.stall_timeout,
                read_timeout=self.stall_timeout,
            )
            known = self._pools[url] = (pool, urlsplit(url).path.rstrip("/") + wire.API)
        pool, prefix = known
        content_type = None if body is None else "application/octet-stream"
        answer = await pool.request(method, prefix + route, body, content_type, headers)
        if answer.status >= 300:
            raise error_from(answer.status, answer.body, url)
        return answer

    def close(self) -> None:
        for pool, _ in self._pools.values():
            pool.close()
        self._pools.clear()


def tls_context(url: str, ca: str | os.PathLike[str] | None) -> ssl.SSLContext | None:
    """The context that verifies *url*'s server, or None for plain HTTP."""
    if not url.startswith("https:"):
        return None
    context = client_ssl(ca)
    return None if isinstance(context, bool) else context  # None: http1 makes the default one
