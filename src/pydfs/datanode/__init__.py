"""The data node: block storage on local disk behind an HTTP API, heartbeating to the name node."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Coroutine
from typing import Any

import aiohttp

from pydfs import fastpath as pydfs_fastpath
from pydfs import metrics, rpc, server, tokens, wire
from pydfs.config import DataNodeConfig
from pydfs.datanode import app, fastpath
from pydfs.datanode.blockstore import BlockStore
from pydfs.datanode.heartbeat import Heartbeats
from pydfs.datanode.scanner import Scanner
from pydfs.datanode.transfer import Transfers
from pydfs.errors import InvalidArgument

log = logging.getLogger("pydfs.datanode")

__all__ = ["DataNode", "run"]


class DataNode:
    def __init__(self, config: DataNodeConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self._lock = server.lock_data_dir(config.data_dir, "datanode")
        self.store = BlockStore(config.data_dir, wire.CHUNK_SIZE, config.capacity)
        self.secret = load_secret(config)
        self.session = session
        credential = {"Authorization": f"Node {tokens.node_credential(self.secret)}"}
        self.namenodes = [
            rpc.Rpc(url, ca=config.tls_ca, headers=credential) for url in config.namenodes
        ]
        self.url = ""
        self.heartbeats = Heartbeats(self, self.namenodes)
        self.scanner = Scanner(self)
        self.transfers = Transfers(self)
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run *coro* in the background, kept referenced until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def close(self) -> None:
        await self.transfers.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for namenode in self.namenodes:
            namenode.close()
        self.store.close()


def load_secret(config: DataNodeConfig) -> bytes:
    path = config.secret_file or config.data_dir / tokens.SECRET_FILE
    try:
        return tokens.read_secret(path)
    except FileNotFoundError:
        raise InvalidArgument(
            f"no cluster secret at {path}: copy the name node's {tokens.SECRET_FILE} there "
            "(or point --secret-file at it)"
        ) from None
    except OSError as exc:
        raise InvalidArgument(f"cannot read the cluster secret {path}: {exc}") from None


def run(config: DataNodeConfig) -> None:
    tls = server.server_tls(config.tls_cert, config.tls_key)
    rpc.client_ssl(config.tls_ca)  # a bad CA bundle fails here, in one line

    async def main() -> None:
        async with rpc.new_session(ca=config.tls_ca) as session:
            dn = DataNode(config, session)
            log.info("data node %s with %d blocks", dn.store.node_id, dn.store.count)
            tasks: list[asyncio.Task[None]] = []

            async def after_bind(url: str) -> None:
                dn.url = url
                tasks.extend(dn.heartbeats.run_forever())
                tasks.append(asyncio.create_task(dn.scanner.run_forever()))

            application, pipeline = app.build(dn)
            front: type[pydfs_fastpath.Front] = fastpath.Front
            if os.environ.get("PYDFS_DATANODE_FASTPATH") == "0":  # to measure what it saves
                front = fastpath.NoFront
            try:
                await server.serve(
                    application,
                    config.host,
                    config.port,
                    advertise=config.advertise,
                    url_file=config.data_dir / "datanode.url",
                    after_bind=after_bind,
                    tls=tls,
                    front=lambda fallback, limits: front(
                        pipeline, application[metrics.REQUESTS], fallback, limits
                    ),
                    limits=server.Limits.of(config),
                )
            finally:
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await dn.close()

    server.run(main(), use_uvloop=False)
