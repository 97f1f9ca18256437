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
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload
from urllib.parse import quote, urlencode, urlsplit

from pydfs import errors, http1, ids, wire
from pydfs.config import namenode_urls

if TYPE_CHECKING:
    import ssl

    import aiohttp

log = logging.getLogger("pydfs.rpc")
T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
FAILOVER_TIMEOUT = 30.0  # outlasts a PostgreSQL failover (about 20 s with Patroni's ttl of 20)
# One attempt, when another name node could answer instead: a name node that hangs (stopped,
# swapping, its machine gone while its TCP stack still accepts) costs this much, well within
# FAILOVER_TIMEOUT, before the call goes to the next one. A name node answers in milliseconds;
# an attempt cut short while it still works is harmless to send again elsewhere: a GET changes
# nothing, and the request id has the other name node apply a change once, with one answer.
ATTEMPT_TIMEOUT = 10.0
MAX_FAILOVER_TIMEOUT = 300.0  # name nodes remember a request 600 s (namenode.applied.KEEP)
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


class Backoff:
    """Whether, and after how long, a call that failed with ``Unavailable`` is sent again, as
    HDFS's failover proxy provider decides: at once to a name node not tried yet in this round,
    then after a wait that doubles each round (*first*, up to *most*, with jitter), until
    *deadline* (a ``clock()`` time), the last attempt at the deadline itself. A lone name node
    that cannot be reached is tried *retries* more times; one that answers "unavailable" (it
    lost its database, say) is tried until the deadline, as the name nodes of a cluster are."""

    def __init__(
        self,
        urls: int,
        deadline: float,
        *,
        retries: int = 2,
        first: float = 0.05,
        most: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.urls, self.deadline, self.retries = urls, deadline, retries
        self.first, self.most, self.clock = first, most, clock
        self.failures = 0

    def next(self, *, answered: bool) -> float | None:
        """Seconds to wait before the next attempt (on the next name node), or None: give up.
        *answered*: the name node answered that it cannot serve now (rather than not at all)."""
        self.failures += 1
        if self.urls == 1 and not answered and self.failures > self.retries:
            return None
        if self.urls > 1 and self.failures % self.urls:
            delay = 0.0  # a name node not tried in this round: at once
        else:
            rounds = self.failures // self.urls
            delay = min(self.most, self.first * 2 ** (rounds - 1)) * random.uniform(0.5, 1.0)
        left = self.deadline - self.clock()
        return None if left <= 0 else min(delay, left)  # a last attempt at the deadline


class Rpc:
    """JSON calls to a name node over a small pool of kept-alive connections; concurrent calls
    each take one of their own. ``close()`` closes them.

    Given several name nodes (one cluster's, as a list or a comma-separated string), a call
    that fails with ``Unavailable`` (no connection, connection lost, a TLS failure, a 503 or
    504 answer) or that has no answer within *attempt_timeout* (a name node that hangs) goes
    to the next one (``Backoff``), until *failover_timeout* seconds have passed; calls then
    stay with the name node that answered last, or start with the next after one that failed.
    Any other error (a 4xx) is the answer. A call that changes something carries a request id
    (``X-Pydfs-Request``), the same in every attempt, so that the name nodes apply it once
    however often it is sent."""

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        ca: str | os.PathLike[str] | None = None,
        retries: int = 2,
        backoff: float = 0.05,
        headers: Mapping[str, str] | None = None,
        connections: int = 32,
        call_timeout: float | None = None,
        failover_timeout: float = FAILOVER_TIMEOUT,
        attempt_timeout: float = ATTEMPT_TIMEOUT,
    ) -> None:
        """*call_timeout*: seconds a call may take, retries included (None: no limit but the
        connection's own timeouts and *failover_timeout*). *attempt_timeout*: seconds one
        attempt may take when there are several name nodes (at most its share of
        *call_timeout*), after which the call goes on to the next."""
        self.urls = namenode_urls(base_url)
        if not 0 < failover_timeout <= MAX_FAILOVER_TIMEOUT:
            raise errors.InvalidArgument(
                f"failover_timeout must be more than 0 and at most {MAX_FAILOVER_TIMEOUT:g} s"
            )
        self.call_timeout = call_timeout
        self.failover_timeout = failover_timeout
        self.attempt_timeout: float | None = None  # a lone name node: its connection's timeouts
        if len(self.urls) > 1:
            share = attempt_timeout if call_timeout is None else call_timeout / len(self.urls)
            self.attempt_timeout = min(attempt_timeout, share)
        self.retries = retries
        self.backoff = backoff
        self.headers = dict(headers or {})
        self.failovers = 0  # calls that went on to another name node
        self._current = 0
        self._prefixes = [urlsplit(url).path + wire.API for url in self.urls]
        self._pools = [
            http1.Pool(
                url,
                self.headers,
                ssl_context=tls_context(url, ca),
                connect_timeout=CONNECT_TIMEOUT,
                read_timeout=READ_TIMEOUT,
                size=connections,
            )
            for url in self.urls
        ]

    @property
    def base_url(self) -> str:
        """The name node calls go to now: the one that answered last."""
        return self.urls[self._current]

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
        # Slashes as they are: a path's query then needs no unquoting at the server (its fast
        # path reads such a query without parse_qsl), and reads as it is in logs.
        query = f"?{urlencode(params, safe='/', quote_via=quote)}" if params else ""
        data = None if body is None else wire.encode(body)
        headers = None
        if method != "GET":
            rid = ids.new_id()  # grows with time: the name node keeps it in an index
            headers = {wire.H_REQUEST: rid, "X-Request-Id": rid}
        backoff = Backoff(
            len(self.urls),
            time.monotonic() + self.failover_timeout,
            retries=self.retries,
            first=self.backoff,
        )
        try:
            async with asyncio.timeout(self.call_timeout) as limit:
                while True:
                    index = self._current
                    url = self.urls[index]
                    try:
                        status, raw, _ = await self._attempt(
                            index, method, route + query, data, headers
                        )
                    except errors.Unavailable as exc:
                        failure, answered = exc, False
                    except errors.Timeout as exc:
                        if self.attempt_timeout is None:
                            raise
                        failure, answered = exc, False
                    else:
                        if status < 300:
                            return None if reply is None else wire.decode(raw, reply)
                        error = error_from(status, raw, url)
                        if not isinstance(error, errors.Unavailable):
                            raise error
                        failure, answered = error, True
                    if self._current == index:  # no other call moved on meanwhile
                        self._current = (index + 1) % len(self.urls)  # even if this one gives up
                    delay = backoff.next(answered=answered)
                    if delay is None:
                        raise failure
                    if len(self.urls) > 1:
                        log.info("%s %s: %s; trying the next name node", method, route, failure)
                        self.failovers += 1
                    await asyncio.sleep(delay)
        except TimeoutError:
            if not limit.expired():
                raise
            raise errors.Timeout(
                f"{self.base_url} did not answer within {self.call_timeout:g} s"
            ) from None

    async def _attempt(
        self,
        index: int,
        method: str,
        target: str,
        data: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> http1.Answer:
        """One attempt on the name node at *index*, within ``attempt_timeout``."""
        pool, target = self._pools[index], self._prefixes[index] + target
        if self.attempt_timeout is None:  # no timer of its own for each call to a lone one
            return await pool.request(method, target, data, JSON, headers)
        try:
            async with asyncio.timeout(self.attempt_timeout) as limit:
                return await pool.request(method, target, data, JSON, headers)
        except TimeoutError:
            if not limit.expired():
                raise
            raise errors.Timeout(
                f"{self.urls[index]} did not answer within {self.attempt_timeout:g} s"
            ) from None

    def close(self) -> None:
        for pool in self._pools:
            pool.close()


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
