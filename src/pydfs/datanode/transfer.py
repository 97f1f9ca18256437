"""Copying blocks to other data nodes on the name node's orders, throttled.

A copy streams the block's bytes with the chunk CRCs from its trailer, in the same framed format
a client writes, so the receiving node verifies every chunk on arrival exactly as for a client
write. At most ``max_copies`` run at once, and together they send at most ``copy_bandwidth``
bytes per second, so that healing never starves client traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from pydfs import rpc, wire
from pydfs.errors import ChecksumMismatch, PydfsError

if TYPE_CHECKING:
    from pydfs.datanode import DataNode

log = logging.getLogger("pydfs.datanode.transfer")


class Throttle:
    """A token bucket shared by all copies of one node."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._allowance = float(rate)
        self._last = time.monotonic()

    async def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        self._allowance = min(float(self.rate), self._allowance + (now - self._last) * self.rate)
        self._last = now
        self._allowance -= n
        if self._allowance < 0:
            await asyncio.sleep(-self._allowance / self.rate)


class Transfers:
    def __init__(self, dn: DataNode) -> None:
        self.dn = dn
        self._slots = asyncio.Semaphore(dn.config.max_copies)
        self._throttle = Throttle(dn.config.copy_bandwidth)
        self._tasks: set[asyncio.Task[None]] = set()
        self.copies_sent = 0
        self.bytes_sent = 0
        self.copies_failed = 0

    def start(self, blocks: list[str], target: wire.NodeRef, tokens: list[str]) -> None:
        for block, token in zip(blocks, tokens, strict=False):
            task = asyncio.ensure_future(self._copy(block, target, token))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _copy(self, block_id: str, target: wire.NodeRef, token: str) -> None:
        async with self._slots:
            try:
                size = self.dn.store.checksums(block_id).size
                rate = max(1, self.dn.config.copy_bandwidth)
                limit = self.dn.config.stall_timeout + 4 * size / rate
                await asyncio.wait_for(self.copy(block_id, target, token), limit)
            except TimeoutError:
                log.warning("copy of %s to %s timed out", block_id, target.id)
                self.dn.heartbeats.copy_failed(block_id)
                self.copies_failed += 1
            except ChecksumMismatch:
                # The target refused our bytes: find out whether our replica is the bad one.
                log.warning("copy of %s to %s failed its checksum; verifying", block_id, target.id)
                await self.dn.scanner.verify_and_report(block_id)
                self.dn.heartbeats.copy_failed(block_id)
                self.copies_failed += 1
            except (PydfsError, OSError) as exc:
                log.warning("copy of %s to %s failed: %s", block_id, target.id, exc)
                self.dn.heartbeats.copy_failed(block_id)
                self.copies_failed += 1
            self.dn.heartbeats.wake()  # for news of the copy, and the next orders

    async def copy(self, block_id: str, target: wire.NodeRef, token: str) -> None:
        f, sums = self.dn.store.open_block(block_id)
        url = f"{target.url}{wire.API}/blocks/{block_id}"

        async def frames() -> AsyncIterator[bytes]:
            left = sums.size
            for crc in sums.chunk_crcs:
                data = f.read(min(sums.chunk_size, left))
                left -= len(data)
                await self._throttle.take(len(data))
                yield wire.FRAME.pack(len(data), crc)
                yield data
            yield wire.FRAME.pack(0, sums.crc)

        headers = {"Content-Type": "application/octet-stream", wire.H_BLOCK_TOKEN: token}
        try:
            with f:
                async with self.dn.session.put(url, data=frames(), headers=headers) as resp:
                    await rpc.raise_for_error(resp)
        except PydfsError:
            raise
        except Exception as exc:
            raise rpc.translate(exc, target.url) from exc
        self.copies_sent += 1
        self.bytes_sent += sums.size
        log.info("copied block %s to %s", block_id, target.id)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
