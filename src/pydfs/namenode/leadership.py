"""Which name node does the background work: one at a time, chosen through the store.

Several name nodes may serve one metadata database; each serves clients, but only the holder of
the lease (``interface.Leader``) scans replication, trims surplus replicas, reconciles block
reports, counts the replicas data nodes report and expires abandoned uploads. The lease is a
row with an epoch, timed by the store's clock; its holder renews it every ``ttl / 3`` seconds,
and another name node takes it once it has lapsed, so leadership moves within ``ttl + ttl / 3``
seconds of the leader's death (a clean stop resigns, and it moves at the next renewal).

A leader learns that it lost the lease only at its next round trip (it may have been stopped,
or cut off, meanwhile), so the lease alone would let a deposed leader act on what it last
knew. Every leader-only change is therefore made in ``write()``: a transaction that checks,
inside itself, that this name node still holds the lease at its epoch, and rolls back if not.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from pydfs.errors import NotLeader
from pydfs.namenode.store import Store

__all__ = ["Leadership", "NotLeader"]
from pydfs.namenode.store.interface import Lease, Tx

log = logging.getLogger("pydfs.namenode.leadership")

MARGIN = 0.8  # of the ttl this name node trusts its lease for, counted from its renewal's start


class Leadership:
    """This name node's part in the lease: renew it, know whether it leads, guard writes."""

    def __init__(
        self, store: Store, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.clock = clock
        self.holder = secrets.token_hex(8)  # this process: a restarted name node is another
        self.url = ""
        self.epoch: int | None = None  # while this name node holds the lease
        self.lease: Lease | None = None  # as last seen, whoever holds it
        self.store_up = True  # the last renewal reached the store
        self.took_lead = 0  # times this name node became the leader
        self.refused = 0  # leader-only changes refused because the lease had moved
        self._until = 0.0  # on ``clock``: this name node leads until then, if not told sooner
        self._nudges: int | None = None
        self._nudge = False
        self.on_lead: Callable[[], None] = lambda: None  # called when this name node takes over

    def leads(self) -> bool:
        return self.epoch is not None and self.clock() < self._until

    async def renew(self) -> None:
        """Claim or extend the lease, and pass on a nudge for a replication scan."""
        started = self.clock()
        leading = self.leads()
        try:
            async with self.store.write() as tx:
                if self._nudge and self.epoch is None:
                    await tx.leader.nudge()
                lease = await tx.leader.claim(self.holder, self.url, self.ttl)
        except Exception as exc:
            if self.store_up:
                log.warning("cannot renew the lease on background work: %s", exc)
            self.store_up = False
            return
        self.store_up = True
        self._nudge = False
        self.lease = lease
        if lease.holder != self.holder:
            if self.epoch is not None:
                log.warning("lost the lead (epoch %d) to %s", self.epoch, lease.url or "?")
            self.epoch = None
            return
        self._until = started + self.ttl * MARGIN
        if lease.epoch != self.epoch:
            self.epoch = lease.epoch
            self.took_lead += 1
            self._nudges = lease.nudges
            log.info("leads the background work (epoch %d)", lease.epoch)
            self.on_lead()
        elif not leading:  # lapsed (the store was away) and no one took over: news was dropped
            log.info("leads the background work again (epoch %d)", lease.epoch)
            self.on_lead()

    def nudged(self) -> bool:
        """Did another name node ask for a replication scan since the last look?"""
        if self.lease is None or self.lease.nudges == self._nudges:
            return False
        self._nudges = self.lease.nudges
        return True

    def nudge(self) -> None:
        """Something changed that the leader's replication scan must see: if another name node
        leads, tell it with the next renewal."""
        self._nudge = True

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        """A write transaction that commits only while this name node holds the lease."""
        epoch = self.epoch
        if epoch is None or not self.leads():
            raise NotLeader("this name node does not lead the background work")
        async with self.store.write() as tx:
            if not await tx.leader.holds(self.holder, epoch):
                self.refused += 1
                self.epoch = None
                log.warning("the lead moved (epoch %d is over): a change was dropped", epoch)
                raise NotLeader("the lead moved to another name node")
            yield tx

    async def run_forever(self) -> None:
        while True:
            await self.renew()
            await asyncio.sleep(self.ttl / 3)

    async def resign(self) -> None:
        if self.epoch is None:
            return
        self.epoch = None
        try:
            async with self.store.write() as tx:
                await tx.leader.resign(self.holder)
        except Exception as exc:  # stopping anyway: the lease lapses by itself
            log.warning("could not resign the lead: %s", exc)
