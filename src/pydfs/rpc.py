"""The one outgoing HTTP caller, used by the client and by data nodes.

It owns the translation of foreign errors: aiohttp's connection errors become ``Unavailable``
(naming the URL), timeouts become ``Timeout``, and a server's ``ErrorBody`` becomes the matching
``pydfs.errors`` class. Only ``Unavailable`` is retried, and only for idempotent calls.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Mapping
from typing import Any, TypeVar, overload

import aiohttp

from pydfs import errors, wire

log = logging.getLogger("pydfs.rpc")
T = TypeVar("T")

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_read=60)


def new_session(
    timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT, *, ca: str | os.PathLike[str] | None = None
) -> aiohttp.ClientSession:
    """A session for every call of one process; *ca* is the bundle that verifies HTTPS servers
    (else the system's trust store). Certificates are always verified."""
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
    if ca is None:
        return True
    try:
        return ssl.create_default_context(cafile=os.fspath(ca))
    except (OSError, ssl.SSLError) as exc:
        raise errors.InvalidArgument(f"cannot load the CA bundle {ca}: {exc}") from None


async def raise_for_error(resp: aiohttp.ClientResponse) -> None:
    """Turn a non-2xx answer into the pydfs error its body names."""
    if resp.status < 300:
        return
    body = await resp.read()
    try:
        err = wire.decode(body, wire.ErrorBody)
    except errors.ProtocolError:
        if resp.status in (502, 503, 504):
            raise errors.Unavailable(f"{resp.url.origin()} answered {resp.status}") from None
        raise errors.ProtocolError(
            f"{resp.url.origin()} answered {resp.status} without an error body"
        ) from None
    raise errors.from_code(err.code, err.message)


def translate(exc: BaseException, url: str) -> errors.PydfsError:
    """Map an aiohttp/OS exception raised while talking to *url* onto the error tree."""
    if isinstance(exc, errors.PydfsError):
        return exc
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
