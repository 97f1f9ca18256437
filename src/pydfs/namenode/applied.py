"""Each change applied once, however often its client sends it.

A client sends every request that changes something with an id of its own
(``X-Pydfs-Request``, 32 hex digits), the same in every attempt: after a lost answer, a
connection that broke, or a name node that died, it sends the request again, to the same name
node or to another (``rpc.Rpc``). ``Once`` serves such a request so that it is applied at most
once, and every attempt gets the first one's answer:

- The first write transaction the request commits records its id (``store.interface.APPLYING``)
  in that same transaction: the change and the record are durable together, or neither is, on
  this name node or any other sharing the store. Its answer is recorded just after.
- An attempt whose commit finds the id recorded by another attempt (one that ran at the same
  time, or before) applies nothing (``AppliedElsewhere``); one that fails (say "no such file",
  as the first attempt moved it) looks the id up. Either is answered as the first attempt was,
  waiting for that answer a little if it is not recorded yet (``WAIT``); if it never is (the
  name node that applied the request died before recording it) the caller is told that it was
  applied but its answer is lost (``AnswerLost``): never is it applied twice.
- A request made of several transactions (``add_user``: the home, then the user; ``format``:
  the wipe, then ``/tmp`` and the homes) is recorded by its first: a name node that dies
  between them leaves the rest undone, and a retry is told so, rather than wiping twice. The
  rest is harmless to redo: ``add_user`` again, and the layout is made again at every start.

Records are kept ``KEEP`` seconds, longer than a client goes on sending one request (its
``failover_timeout``, at most ``rpc.MAX_FAILOVER_TIMEOUT``, plus one attempt's timeouts), and
pruned a few at a time as answers are recorded.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable

from pydfs import wire
from pydfs.calls import Answer
from pydfs.errors import AnswerLost, ProtocolError, PydfsError, from_code
from pydfs.namenode.store import Store
from pydfs.namenode.store.interface import APPLYING, Applied, AppliedElsewhere, Applying
from pydfs.server import error_body

log = logging.getLogger("pydfs.namenode")

KEEP = 600.0  # seconds a request id is remembered
# Seconds an attempt waits for the answer of another that applied the request: that one may
# be finding out, once the database is back after a failover, that its COMMIT cut short was
# applied (``Store._resolve`` in the PostgreSQL store), as the retry's own write did.
WAIT = 5.0
POLL = 0.02  # seconds between looks at it
PRUNE_EVERY = 1.0  # seconds between prunes; each forgets up to twice the answers since the last
_ID = re.compile(r"[0-9a-f]{32}")


def request_id(given: str) -> str:
    if not _ID.fullmatch(given):
        raise ProtocolError(f"{wire.H_REQUEST} must be 32 lowercase hex digits")
    return given


class Once:
    """Serves requests that carry an id so that each is applied once (see the module)."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.replayed = 0  # attempts answered as an earlier one was
        self._answered = 0  # answers recorded since the last prune
        self._pruned = 0.0  # when

    async def serve(self, user: str, rid: str, call: Callable[[], Awaitable[bytes]]) -> Answer:
        """The answer to *user*'s request *rid*, which *call* applies and answers."""
        applying = Applying(user, rid, secrets.token_hex(8))
        token = APPLYING.set(applying)
        try:
            body = await call()
        except AppliedElsewhere:
            return await self._as_before(applying)
        except PydfsError as exc:
            if exc.status >= 500:  # nothing to remember: the client tries again
                raise
            if applying.recorded:  # a later transaction of the request refused
                await self._answer(applying, exc.status, error_body(exc))
                raise
            prior = await self._lookup(applying)
            if prior is None or prior.attempt == applying.attempt:
                raise
            return await self._as_before(applying)  # refused as the first attempt changed it
        finally:
            APPLYING.reset(token)
        if applying.recorded:
            await self._answer(applying, 200, body)
        return Answer(200, body)

    async def _lookup(self, applying: Applying) -> Applied | None:
        async with self.store.read() as tx:
            return await tx.requests.applied(applying.user, applying.request_id)

    async def _as_before(self, applying: Applying) -> Answer:
        """The answer of the attempt that applied the request, once recorded."""
        self.replayed += 1
        deadline = time.monotonic() + WAIT
        while True:
            prior = await self._lookup(applying)
            if prior is not None and prior.status is not None and prior.body is not None:
                break
            if time.monotonic() >= deadline:
                raise AnswerLost(
                    "this request was applied by an earlier attempt, whose name node stopped "
                    "before recording its answer: look at the result before trying again"
                )
            await asyncio.sleep(POLL)
        log.info("request %s was applied before: answered as then", applying.request_id)
        if prior.status != 200:
            error = wire.decode(prior.body, wire.ErrorBody)
            raise from_code(error.code, error.message)
        return Answer(200, prior.body)

    async def _answer(self, applying: Applying, status: int, body: bytes) -> None:
        """Record the answer of a request this attempt applied (soft state, like a lease: a
        lost one only makes a retry's answer ``AnswerLost``); prune some old records."""
        now = self.clock()
        self._answered += 1
        try:
            await self.store.answered(applying.user, applying.request_id, status, body)
            if now - self._pruned >= PRUNE_EVERY:
                limit, self._pruned, self._answered = 2 * self._answered + 16, now, 0
                async with self.store.write(durable=False) as tx:
                    await tx.requests.prune(now - KEEP, limit)
        except PydfsError as exc:  # the change stands; only a retry's answer is lost
            log.warning("could not record the answer of request %s: %s", applying.request_id, exc)
