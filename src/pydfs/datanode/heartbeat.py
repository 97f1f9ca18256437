"""Heartbeats and block reports to the name node, and the work that comes back with them."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING

from pydfs import wire
from pydfs.errors import PydfsError

if TYPE_CHECKING:
    from pydfs.datanode import DataNode

log = logging.getLogger("pydfs.datanode.heartbeat")


class Heartbeater:
    def __init__(self, dn: DataNode) -> None:
        self.dn = dn
        # News for the name node, kept until a heartbeat carrying it succeeds.
        self.received: list[wire.Received] = []
        self.corrupt: list[str] = []
        self.failed_copies: list[str] = []
        self._wake = asyncio.Event()
        self._last_report: float | None = None  # a full report goes out at start (None)
        self.incarnation = secrets.token_hex(8)

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
        hb = wire.Heartbeat(
            id=store.node_id,
            url=dn.url,
            incarnation=self.incarnation,
            capacity=store.total(),
            used=store.used,
            free=store.free(),
            blocks=store.count,
            received=self.received[:],
            corrupt=self.corrupt[:],
            failed_copies=self.failed_copies[:],
        )
        reply = await dn.namenode.call(
            "POST", "/datanodes/heartbeat", hb, reply=wire.HeartbeatReply
        )
        del self.received[: len(hb.received)]
        del self.corrupt[: len(hb.corrupt)]
        del self.failed_copies[: len(hb.failed_copies)]
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
        reply = await self.dn.namenode.call(
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
        while True:
            try:
                await self.run_once()
            except PydfsError as exc:
                log.warning("heartbeat to %s failed: %s", self.dn.namenode.base_url, exc)
            except Exception:  # a heartbeat loop that dies would have this node declared dead
                log.exception("heartbeat failed")
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
                await asyncio.sleep(0.05)  # let a burst of news gather into one heartbeat
            except TimeoutError:
                pass
            self._wake.clear()
