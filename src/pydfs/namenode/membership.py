"""The data node registry: who is alive, where they are and how much room they have.

Liveness is soft state rebuilt from heartbeats (a restarted name node knows every node again
within one heartbeat interval); a node's id, URL and admin state are persisted, so that block
locations keep an address while their node is away and a decommission survives a restart.

A node *serves* when it is live and in the normal admin state: only serving nodes take new
blocks and count towards a block's replication. A decommissioning node is still read from, and
is a source for the copies that drain it.

Just after a start the name node has heard from no data node, and every write would fail for
want of one. Like HDFS's safe mode, writes wait (``starting``) until as many nodes as a block
needs have reported, of those the registry knew before, or until ``safe_mode_wait`` has passed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

from pydfs import wire
from pydfs.errors import NotFound
from pydfs.namenode.placement import Candidate
from pydfs.namenode.store import Store
from pydfs.namenode.store.interface import Tx

log = logging.getLogger("pydfs.namenode")

MAX_WRITE_FAILURE = 200  # characters of a data node's reason kept (an strerror is far shorter)

Writer = Callable[[], AbstractAsyncContextManager[Tx]]


@dataclass(slots=True)
class Node:
    id: str
    url: str
    capacity: int = 0
    used: int = 0
    free: int = 0
    blocks: int = 0
    last_heartbeat: float | None = None  # on the registry's clock; None: never
    last_heartbeat_wall: float = 0.0
    wants_report: bool = False
    incarnation: str = ""
    admin_state: wire.AdminState = "normal"
    write_failure: str = ""  # as its last heartbeat told


@dataclass
class Membership:
    store: Store
    dead_after: float
    safe_mode_wait: float = 0.0  # seconds after start writes may wait for data nodes
    clock: Callable[[], float] = time.monotonic
    nodes: dict[str, Node] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._known = 0
        self._started: float | None = self.clock()  # None once out of safe mode, for good

    async def load(self) -> None:
        """Know again the nodes the store remembers (at start)."""
        async with self.store.read() as tx:
            for row in await tx.datanodes.all():
                self.nodes[row.id] = Node(row.id, row.url, admin_state=_state(row.admin_state))
        self._known = sum(n.admin_state == "normal" for n in self.nodes.values())
        self._started = self.clock()

    def starting(self, replication: int) -> tuple[int, int] | None:
        """While the name node waits for data nodes after its start: (how many serve now, how
        many it waits for); None once min(replication, nodes known before) serve, or once
        ``safe_mode_wait`` has passed, and from then on."""
        if self._started is None:
            return None
        wanted = min(replication, self._known)
        serving = len(self.serving())
        if serving >= wanted or self.clock() - self._started >= self.safe_mode_wait:
            self._started = None
            return None
        return serving, wanted

    async def heartbeat(self, hb: wire.Heartbeat) -> tuple[Node, bool]:
        """Record a heartbeat; returns the node and whether it is a new process since the last
        one. A node that is new to this name node, restarted, or back from the dead is asked for
        a full block report so that its replicas are reconciled."""
        node = self.nodes.get(hb.id)
        restarted = node is None or node.incarnation != hb.incarnation
        returning = restarted or not self.is_live(hb.id)
        if node is None or node.url != hb.url:
            async with self.store.write() as tx:
                await tx.datanodes.put(hb.id, hb.url)
            if node is None:
                node = self.nodes[hb.id] = Node(hb.id, hb.url)
            node.url = hb.url
        node.capacity, node.used, node.free, node.blocks = hb.capacity, hb.used, hb.free, hb.blocks
        node.last_heartbeat = self.clock()
        node.last_heartbeat_wall = time.time()
        node.incarnation = hb.incarnation
        failure = hb.write_failure[:MAX_WRITE_FAILURE]
        if failure != node.write_failure:
            if failure:
                log.warning(
                    "data node %s refused a block (%s): it gets new ones only if others cannot",
                    hb.id,
                    failure,
                )
            else:
                log.info("data node %s takes new blocks again", hb.id)
        node.write_failure = failure
        if returning:
            node.wants_report = True
        return node, restarted

    def is_live(self, node_id: str) -> bool:
        node = self.nodes.get(node_id)
        return (
            node is not None
            and node.last_heartbeat is not None
            and self.clock() - node.last_heartbeat <= self.dead_after
        )

    def live(self) -> list[Node]:
        return [n for n in self.nodes.values() if self.is_live(n.id)]

    def serving(self) -> list[Node]:
        return [n for n in self.live() if n.admin_state == "normal"]

    def candidates(self) -> list[Candidate]:
        """Where new blocks may go: the serving nodes (those whose disk refused one lately
        only when too few others can take it: ``placement``)."""
        return [Candidate(n.id, n.free, bool(n.write_failure)) for n in self.serving()]

    async def set_admin_state(
        self, node_id: str, state: wire.AdminState, write: Writer | None = None
    ) -> Node:
        """*write*: the transaction to make the change in (the store's, unless given)."""
        node = self.nodes.get(node_id)
        if node is None:
            raise NotFound(f"no data node {node_id!r}")
        async with (write or self.store.write)() as tx:
            await tx.datanodes.set_admin_state(node_id, state)
        node.admin_state = state
        return node

    async def refresh(self) -> bool:
        """Learn the admin states and addresses other name nodes recorded; whether any
        changed."""
        async with self.store.read() as tx:
            rows = await tx.datanodes.all()
        changed = False
        for row in rows:
            node = self.nodes.get(row.id)
            if node is None:
                node = self.nodes[row.id] = Node(row.id, row.url)
            state = _state(row.admin_state)
            changed |= node.admin_state != state
            node.admin_state = state
            if node.last_heartbeat is None:
                node.url = row.url  # a live node's own heartbeat says where it is
        return changed

    def ref(self, node_id: str) -> wire.NodeRef:
        node = self.nodes.get(node_id)
        return wire.NodeRef(node_id, node.url if node else "", self.is_live(node_id))

    def request_reports(self) -> None:
        for node in self.nodes.values():
            node.wants_report = True

    def space(self, replication: int) -> wire.Space:
        live = self.serving()
        free = sum(n.free for n in live)
        return wire.Space(
            raw_capacity=sum(n.capacity for n in live),
            raw_free=free,
            used=sum(n.used for n in live),
            usable=free // max(1, min(replication, len(live) or 1)),
            replication=replication,
            live_nodes=len(live),
            dead_nodes=len(self.nodes) - len(self.live()),
        )

    def states(self) -> list[wire.DataNodeState]:
        return [
            wire.DataNodeState(
                id=n.id,
                url=n.url,
                state="live" if self.is_live(n.id) else "dead",
                admin_state=n.admin_state,
                capacity=n.capacity,
                used=n.used,
                free=n.free,
                blocks=n.blocks,
                last_heartbeat=n.last_heartbeat_wall,
                write_failure=n.write_failure if self.is_live(n.id) else "",
            )
            for n in sorted(self.nodes.values(), key=lambda n: n.id)
        ]


_STATES: dict[str, wire.AdminState] = {
    "decommissioning": "decommissioning",
    "decommissioned": "decommissioned",
}


def _state(value: str) -> wire.AdminState:
    return _STATES.get(value, "normal")
