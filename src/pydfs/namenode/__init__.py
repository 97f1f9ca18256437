"""The name node: the namespace, the data node registry and upload leases behind one HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pydfs import server, wire
from pydfs.config import NameNodeConfig
from pydfs.namenode import app
from pydfs.namenode.membership import Membership, Node
from pydfs.namenode.namespace import Namespace
from pydfs.namenode.store import Store
from pydfs.namenode.uploads import Uploads

log = logging.getLogger("pydfs.namenode")

__all__ = ["NameNode", "run"]


class NameNode:
    def __init__(self, config: NameNodeConfig) -> None:
        self.config = config
        self._lock = server.lock_data_dir(config.data_dir, "namenode")
        self.store = Store(config.data_dir / "namespace.sqlite3")
        self.membership = Membership(self.store, dead_after=config.dead_after)
        self.namespace = Namespace(
            self.store,
            self.membership,
            replication=config.replication,
            block_size=config.block_size,
        )
        self.uploads = Uploads(self.namespace, self.membership, lease=config.upload_lease)

    def delete_orders(self, node_id: str) -> list[wire.Command]:
        blocks = self.namespace.trash_for(node_id)
        return [wire.Command(op="delete", blocks=blocks)] if blocks else []

    def orders(self, node: Node) -> wire.HeartbeatReply:
        """The work a heartbeat reply carries back to its data node."""
        return wire.HeartbeatReply(
            commands=self.delete_orders(node.id), send_report=node.wants_report
        )

    async def sweep_forever(self, interval: float = 30.0) -> None:
        while True:
            await asyncio.sleep(interval)
            expired = self.uploads.expire()
            if expired:
                log.info("expired %d abandoned uploads", expired)


def run(config: NameNodeConfig) -> None:
    async def main() -> None:
        nn = NameNode(config)
        sweeper = asyncio.create_task(nn.sweep_forever())
        try:
            await server.serve(
                app.build(nn),
                config.host,
                config.port,
                advertise=config.advertise,
                url_file=config.data_dir / "namenode.url",
            )
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            nn.store.close()

    server.run(main())
