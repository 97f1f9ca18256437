"""Keeping every block at its replication factor: find under- and over-replicated blocks and
hand out copy and delete orders with heartbeat replies.

A block needs as many replicas on *serving* nodes (live, not decommissioning) as the highest
replication factor among the files that name it. ``run_once`` compares that with what the
``replicas`` table says, orders copies data node → data node for blocks with too few (those down
to a single replica first), and trims surplus replicas from the fullest nodes. Copies are
throttled: at most ``max_copies_per_node`` in flight from, and to, any one node, each with a
deadline after which it is forgotten and ordered again. A copy completes when its target reports
the block received.

A scan only runs when something that changes the answer happened (a node died, came back or is
draining; a replication factor changed; a replica arrived, was lost or was found corrupt) or
while copies are in flight, so an idle cluster costs nothing. Only the leading name node scans
(``leadership``); another one that sees such a change nudges it.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

from pydfs import wire
from pydfs.namenode import placement
from pydfs.namenode.blockmap import BlockMap
from pydfs.namenode.membership import Membership

log = logging.getLogger("pydfs.namenode.replication")


@dataclass(frozen=True, slots=True)
class Copy:
    block: str
    source: str
    target: str
    deadline: float


@dataclass
class Health:
    """What the last scan found (also what ``fsck`` reports cluster-wide)."""

    under_replicated: int = 0
    over_replicated: int = 0
    missing: int = 0
    copies_ordered: int = 0
    replicas_trimmed: int = 0


@dataclass
class Replicator:
    blockmap: BlockMap
    membership: Membership
    max_copies_per_node: int = 4
    copy_timeout: float = 120.0
    dirty: bool = True
    health: Health = field(default_factory=Health)
    corrupt: set[str] = field(default_factory=set)  # blocks with a replica found bad, until healed
    _in_flight: dict[str, list[Copy]] = field(default_factory=lambda: defaultdict(list))
    _orders: dict[str, list[Copy]] = field(default_factory=lambda: defaultdict(list))
    _last_view: tuple[frozenset[str], ...] = ()
    blocks_copied: int = 0
    bytes_copied: int = 0

    # --- events -----------------------------------------------------------------------------

    async def received(self, node_id: str, received: list[wire.Received]) -> None:
        """A data node stored these replicas (a client write, a copy we ordered) or found them
        good when asked; blocks of uploads still in flight are counted when their upload
        commits. Other bytes than a committed block's are trashed, and count as corrupt."""
        if not received:
            return
        changed, bad = await self.blockmap.add_replicas(node_id, received)
        if changed:
            self.dirty = True
        if bad:
            self.corrupt.update(bad)
            log.warning("%s holds other bytes than recorded for %d blocks", node_id, len(bad))
        for block in (r.block for r in received):
            copies = self._in_flight.get(block, [])
            done = [c for c in copies if c.target == node_id]
            for copy in done:
                copies.remove(copy)
                self.blocks_copied += 1
                self.bytes_copied += await self.blockmap.size_of(block)
                self.dirty = True
            if not copies:
                self._in_flight.pop(block, None)

    def restart(self) -> None:
        """Begin afresh (this name node just took the lead: what it knew of copies may be
        stale, and another leader may have ordered others)."""
        self._in_flight.clear()
        self._orders.clear()
        self.dirty = True

    def forget_orders(self, node_id: str) -> None:
        """Copies that *node_id* was to send or receive will not happen: order them anew."""
        self._orders.pop(node_id, None)
        for queued in self._orders.values():
            queued[:] = [c for c in queued if c.target != node_id]
        for block, copies in list(self._in_flight.items()):
            copies[:] = [c for c in copies if node_id not in (c.source, c.target)]
            if not copies:
                del self._in_flight[block]
        self.dirty = True

    def copy_failed(self, node_id: str, blocks: list[str]) -> None:
        for block in blocks:
            copies = self._in_flight.get(block, [])
            copies[:] = [c for c in copies if c.source != node_id]
        self.dirty = True

    async def corrupt_replicas(self, node_id: str, blocks: list[str]) -> None:
        """*node_id* quarantined these replicas: they no longer count."""
        if not blocks:
            return
        await self.blockmap.drop_replicas(node_id, blocks)
        self.corrupt.update(blocks)
        log.warning("%s found %d corrupt replicas", node_id, len(blocks))
        self.dirty = True

    def orders_for(self, node_id: str) -> list[wire.Command]:
        """Copy orders for *node_id* as a source, grouped by target."""
        pending = self._orders.pop(node_id, [])
        by_target: dict[str, list[str]] = defaultdict(list)
        for copy in pending:
            by_target[copy.target].append(copy.block)
        return [
            wire.Command(op="replicate", blocks=blocks, target=self.membership.ref(target))
            for target, blocks in by_target.items()
        ]

    # --- the scan ----------------------------------------------------------------------------

    def _view_changed(self) -> bool:
        live = self.membership.live()
        view = (
            frozenset(n.id for n in live),
            frozenset(n.id for n in self.membership.serving()),
            frozenset(n.id for n in live if n.write_failure),
        )
        changed = view != self._last_view
        self._last_view = view
        return changed

    async def run_once(self) -> Health:
        now = time.monotonic()
        live = {n.id for n in self.membership.live()}
        for block, copies in list(self._in_flight.items()):
            # A copy past its deadline, or between nodes one of which died, is ordered anew.
            dropped = [
                c
                for c in copies
                if c.deadline <= now or c.source not in live or c.target not in live
            ]
            for copy in dropped:
                copies.remove(copy)
                queued = self._orders.get(copy.source, [])
                if copy in queued:
                    queued.remove(copy)  # not handed out yet: withdraw it
                self.dirty = True
            if not copies:
                del self._in_flight[block]
        if not (self._view_changed() or self.dirty or self._in_flight):
            return self.health
        self.dirty = False
        serving = {n.id for n in self.membership.serving()}
        health = Health()
        sending: dict[str, int] = defaultdict(int)
        receiving: dict[str, int] = defaultdict(int)
        for copies in self._in_flight.values():
            for c in copies:
                sending[c.source] += 1
                receiving[c.target] += 1
        limit = self.max_copies_per_node
        candidates = self.membership.candidates()
        healthy_corrupt = set(self.corrupt)
        for block, size, required, holders in await self.blockmap.replication_work(serving):
            healthy_corrupt.discard(block)
            serving_holders = [h for h in holders if h in serving]
            in_flight = self._in_flight.get(block, [])
            have = len(serving_holders)
            if have > required:
                health.over_replicated += 1
                if not in_flight:
                    trimmed = await self._trim(block, serving_holders, have - required)
                    health.replicas_trimmed += trimmed
                continue
            sources = [h for h in holders if h in live and sending[h] < limit]
            if not any(h in live for h in holders):
                health.missing += 1
                continue
            health.under_replicated += 1
            need = required - have - len(in_flight)
            if need <= 0 or not sources:
                continue
            exclude = frozenset(holders) | {c.target for c in in_flight}
            exclude |= {n for n, count in receiving.items() if count >= limit}
            for target in placement.choose(candidates, need, size, exclude=exclude):
                source = min(sources, key=lambda h: sending[h])
                copy = Copy(block, source, target, now + self.copy_timeout)
                self._in_flight[block].append(copy)
                self._orders[source].append(copy)
                sending[source] += 1
                receiving[target] += 1
                health.copies_ordered += 1
                if sending[source] >= limit:
                    sources.remove(source)
                    if not sources:
                        break
        self.corrupt -= healthy_corrupt  # those the scan found healthy again
        await self._finish_decommissions()
        if health.copies_ordered or health.replicas_trimmed:
            log.info(
                "replication: %d under-replicated, %d missing, %d copies ordered, %d trimmed",
                health.under_replicated,
                health.missing,
                health.copies_ordered,
                health.replicas_trimmed,
            )
        self.health = health
        return health

    async def _trim(self, block: str, holders: list[str], surplus: int) -> int:
        by_fullness = sorted(holders, key=lambda h: self.membership.nodes[h].free)
        victims = by_fullness[:surplus]
        await self.blockmap.drop_surplus(block, victims)
        return len(victims)

    async def _finish_decommissions(self) -> None:
        for node in list(self.membership.nodes.values()):
            if node.admin_state != "decommissioning":
                continue
            serving = {n.id for n in self.membership.serving()}
            if await self.blockmap.blocks_needing(node.id, serving):
                continue
            await self.membership.set_admin_state(
                node.id, "decommissioned", self.blockmap.lead.write
            )
            log.info("data node %s is decommissioned: its blocks are all elsewhere", node.id)
