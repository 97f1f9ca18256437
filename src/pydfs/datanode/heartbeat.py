"""Heartbeats and block reports to the name nodes, and the work that comes back with them.

With several name nodes (one metadata database), a data node heartbeats to every one of them,
as HDFS's data nodes do to each name node: each name node then knows by itself which data nodes
are alive, and places writes on live ones without asking another. Every report of news (replicas
received, corrupt, copies failed) goes to each; only the leading name node answers with work.

News waits for a name node that does not answer only so long (``NEWS_WINDOW``, ``MAX_NEWS``):
after that it is dropped, and that name node gets a full block report instead when it answers
again, which tells it what the news would have, in bounded memory.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydfs import rpc, wire
from pydfs.errors import PydfsError

if TYPE_CHECKING:
    from pydfs.datanode import DataNode

log = logging.getLogger("pydfs.datanode.heartbeat")

NEWS_WINDOW = 60.0  # seconds a name node may fail to answer before its news is dropped
MAX_NEWS = 100_000  # pieces of news kept for one name node (a few hundred bytes each)
REFUSED_FOR = 60.0  # seconds a node whose disk refused a block asks to be spared new ones


class Heartbeats:
    """This node's link to each name node; news told here goes to every one of them."""

    def __init__(self, dn: DataNode, namenodes: list[rpc.Rpc]) -> None:
        incarnation = secrets.token_hex(8)  # one per process: a new one means a restart
        self._refused: tuple[float, str] | None = None  # (when, why) the disk last refused one
        self.links = [
            Heartbeater(dn, namenode, incarnation, self.write_failure) for namenode in namenodes
        ]

    def received(self, replica: wire.Received) -> None:
        for link in self.links:
            if link.keeps_news():
                link.received.append(replica)

    def corrupt(self, block_id: str) -> None:
        for link in self.links:
            if link.keeps_news():
                link.corrupt.append(block_id)

    def copy_failed(self, block_id: str) -> None:
        for link in self.links:
            if link.keeps_news():
                link.failed_copies.append(block_id)

    def refused(self, why: str) -> None:
        """This node's disk refused a block: for ``REFUSED_FOR`` seconds the name nodes send
        new blocks to other nodes when they can, then the disk is tried again."""
        self._refused = (time.monotonic(), why)
        self.wake()

    def write_failure(self) -> str:
        """Why the disk refused a block within ``REFUSED_FOR`` seconds; "" if it did not."""
        if self._refused is None or time.monotonic() - self._refused[0] >= REFUSED_FOR:
            return ""
        return self._refused[1]

    def wake(self) -> None:
        for link in self.links:
            link.wake()

    def report_soon(self) -> None:
        for link in self.links:
            link.report_soon()

    def run_forever(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(link.run_forever()) for link in self.links]


class Heartbeater:
    """Heartbeats to one name node."""

    def __init__(
        self,
        dn: DataNode,
        namenode: rpc.Rpc,
        incarnation: str,
        write_failure: Callable[[], str],
    ) -> None:
        self.dn = dn
        self.write_failure = write_failure  # ``Heartbeats.write_failure``
        self.namenode = namenode
        # News for the name node, kept until a heartbeat carrying it succeeds.
        self.received: list[wire.Received] = []
        self.corrupt: list[str] = []
        self.failed_copies: list[str] = []
        self.failing_since: float | None = None  # since when heartbeats fail (monotonic)
        self._wake = asyncio.Event()
        self._last_report: float | None = None  # a full report goes out at start (None)
        self.incarnation = incarnation

    def keeps_news(self) -> bool:
        """Whether news for this name node is kept; if not, what it holds is dropped and the
        name node gets a full block report when it answers again."""
        news = len(self.received) + len(self.corrupt) + len(self.failed_copies)
        away = 0.0 if self.failing_since is None else time.monotonic() - self.failing_since
        if news < MAX_NEWS and away <= NEWS_WINDOW:
            return True
        if news or self._last_report is not None:
            log.warning(
                "dropped %d pieces of news for %s; it gets a full block report instead",
                news,
                self.namenode.base_url,
            )
            # new lists: a heartbeat under way deletes what it sent from the old ones
            self.received, self.corrupt, self.failed_copies = [], [], []
            self._last_report = None
        return False

    def wake(self) -> None:
        """Send the next heartbeat now rather than at the end of the interval."""
        self._wake.set()

    def report_soon(self) -> None:
        """Send a full block report with the next heartbeat."""
        self._last_report = None
        self.wake()

    async def run_once(self) -> wire.HeartbeatReply:
        """One heartbeat; sends a full block report when the name node asks or one is due."""
        dn, store = self.dn, self.dn.store
        received, corrupt, failed_copies = self.received, self.corrupt, self.failed_copies
        hb = wire.Heartbeat(
            id=store.node_id,
            url=dn.url,
            incarnation=self.incarnation,
            capacity=store.total(),
            used=store.used,
            free=store.free(),
            blocks=store.count,
            received=received[:],
            corrupt=corrupt[:],
            failed_copies=failed_copies[:],
            write_failure=self.write_failure(),
        )
        try:
            reply = await self.namenode.call(
                "POST", "/datanodes/heartbeat", hb, reply=wire.HeartbeatReply
            )
        except BaseException:
            self.failing_since = self.failing_since or time.monotonic()
            raise
        self.failing_since = None  # news is kept again: the report below starts after this
        del received[: len(hb.received)]
        del corrupt[: len(hb.corrupt)]
        del failed_copies[: len(hb.failed_copies)]
        self.execute(reply.commands)
        due = (
            self._last_report is None
            or time.monotonic() - self._last_report > dn.config.report_interval
        )
        if reply.send_report or due:
            await self.report()
        return reply

    async def report(self) -> None:
        store = self.dn.store
        started = time.monotonic()
        blocks = await asyncio.to_thread(lambda: list(store.list()))
        report = wire.BlockReport(store.node_id, blocks, took=time.monotonic() - started)
        reply = await self.namenode.call(
            "POST", "/datanodes/report", report, reply=wire.HeartbeatReply
        )
        self._last_report = time.monotonic()
        log.info("sent block report of %d blocks", len(report.blocks))
        self.execute(reply.commands)

    def execute(self, commands: list[wire.Command]) -> None:
        for command in commands:
            if command.op == "delete":  # in the background: heartbeats must go on meanwhile
                self.dn.spawn(self._delete(command.blocks))
            elif command.op == "replicate" and command.target is not None:
                self.dn.transfers.start(command.blocks, command.target, command.tokens)
            elif command.op == "verify":
                for block in command.blocks:
                    self.dn.spawn(self.dn.scanner.verify_and_report(block, ordered=True))

    async def _delete(self, blocks: list[str]) -> None:
        deleted = await self.dn.store.delete_many(blocks)
        log.info("deleted %d of %d blocks as ordered", deleted, len(blocks))

    async def run_forever(self) -> None:
        interval = self.dn.config.heartbeat_interval
        failing_since: float | None = None
        said = 0.0  # when a failure was last logged: once a minute while a name node is away
        while True:
            try:
                await self.run_once()
                if failing_since is not None:
                    log.info("heartbeats to %s go through again", self.namenode.base_url)
                failing_since = None
            except Exception as exc:  # a loop that died would have this node declared dead
                now = time.monotonic()
                if failing_since is None or now - said > 60:
                    if isinstance(exc, PydfsError):
                        log.warning("heartbeat to %s failed: %s", self.namenode.base_url, exc)
                    else:
                        log.exception("heartbeat to %s failed", self.namenode.base_url)
                    said = now
                failing_since = failing_since or now
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
                await asyncio.sleep(0.05)  # let a burst of news gather into one heartbeat
            except TimeoutError:
                pass
            self._wake.clear()
