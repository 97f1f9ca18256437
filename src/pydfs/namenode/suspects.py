"""Replicas readers found bad, waiting for their data nodes to verify them.

Any signed-in user may report a replica, and each report costs its node a read of the whole
block. So a report counts only for a replica the node holds, a replica already waiting or
verified within ``AGAIN_AFTER`` seconds is not queued again, each user and all users together
may report only so fast, and the queue is bounded. A report left out changes nothing for the
reader (it has moved on to another replica) and the scrubber reads every replica in time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from pydfs.namenode.blockmap import BlockMap

AGAIN_AFTER = 60.0  # seconds before a replica verified on a report is verified again
MAX_PENDING = 1024  # replicas waiting for verification, over all nodes
PER_HEARTBEAT = 64  # verify orders in one heartbeat reply
USER_RATE, USER_BURST = 2.0, 32.0  # reports per second (sustained, at once) per user
ALL_RATE, ALL_BURST = 20.0, 256.0  # reports per second over all users


class _Bucket:
    """A token bucket: *burst* reports at once, *rate* a second after that."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Suspects:
    def __init__(self, blockmap: BlockMap, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.blockmap = blockmap
        self.clock = clock
        self._pending: dict[str, list[str]] = {}  # node → blocks to verify, oldest first
        self._queued: set[tuple[str, str]] = set()  # (node, block) pending
        # (node, block) → when, oldest first; an OrderedDict, as the oldest go first (a dict
        # steps over every slot deleted before its first entry: sqlite.applied.Answers)
        self._ordered: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._all = _Bucket(ALL_RATE, ALL_BURST, clock())
        self._users: dict[str, _Bucket] = {}

    async def report(self, user: str, node: str, block: str) -> bool:
        """Queue a verification of *block* on *node*; False if the report is left out."""
        now = self.clock()
        self._forget_older_than(now - AGAIN_AFTER)
        key = (node, block)
        if key in self._queued or key in self._ordered or len(self._queued) >= MAX_PENDING:
            return False
        bucket = self._users.get(user)
        if bucket is None:
            bucket = self._users[user] = _Bucket(USER_RATE, USER_BURST, now)
        if not bucket.take(now) or not self._all.take(now):
            return False
        if not await self.blockmap.holds(node, block):
            return False
        self._queued.add(key)
        self._pending.setdefault(node, []).append(block)
        return True

    def orders_for(self, node: str) -> list[str]:
        """The blocks *node* is to verify now (a heartbeat reply's worth)."""
        pending = self._pending.get(node)
        if not pending:
            return []
        now = self.clock()
        orders, self._pending[node] = pending[:PER_HEARTBEAT], pending[PER_HEARTBEAT:]
        for block in orders:
            self._queued.discard((node, block))
            self._ordered[(node, block)] = now
        return orders

    def changed(self, node: str, blocks: Iterable[str]) -> None:
        """*node* stored a new replica of these blocks, or found its replica bad: a report of
        them is news again."""
        for block in blocks:
            self._ordered.pop((node, block), None)

    def _forget_older_than(self, cutoff: float) -> None:
        ordered = self._ordered
        while ordered and next(iter(ordered.values())) <= cutoff:
            ordered.popitem(last=False)

    def __len__(self) -> int:
        """Verifications waiting for their nodes' heartbeats."""
        return len(self._queued)
