"""The scrubber: re-reads every block in the background and quarantines the ones that rotted.

``run_once`` verifies each block against its trailer (the trailer itself, the block it names,
every chunk CRC and the block CRC) at no more than ``scan_rate`` bytes per second, resuming
after the last block it verified (kept in ``scanner.cursor``) so that a restart does not start
the pass over. A bad replica moves to ``quarantine/`` and is reported with the next heartbeat;
the name node then has a good copy made from another replica. A pass ends with a full block
report, so that the name node also learns of replicas that vanished from the disk.
``run_forever`` starts a pass every ``scan_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from pydfs import checksum, wire
from pydfs.checksum import BlockChecksums
from pydfs.errors import NotFound, PydfsError

if TYPE_CHECKING:
    from pydfs.datanode import DataNode

log = logging.getLogger("pydfs.datanode.scanner")


class Scanner:
    def __init__(self, dn: DataNode) -> None:
        self.dn = dn
        self.cursor_file = dn.store.root / "scanner.cursor"
        self.verified = 0
        self.corrupt_found = 0

    def verify(self, block_id: str) -> BlockChecksums | None:
        """The replica's checksums if it matches them, else None; NotFound if it is not here
        (blocking: run it in a thread)."""
        store = self.dn.store
        try:
            f, sums = store.open_block(block_id)
            with f:
                whole, left = 0, sums.size
                for expected in sums.chunk_crcs:
                    data = f.read(min(sums.chunk_size, left))
                    if checksum.crc(data) != expected:
                        return None
                    whole = checksum.crc(data, whole)
                    left -= len(data)
                return sums if whole == sums.crc else None
        except NotFound:
            raise
        except (PydfsError, OSError):
            return None  # a trailer that does not validate included: never served, so bad

    async def verify_and_report(self, block_id: str, *, ordered: bool = False) -> bool:
        """Verify a replica; quarantine and report it if it is bad. *ordered*: the name node
        asked (it counts the replica, or would): a good one is reported as received, with what
        its trailer says, and a missing one as lost."""
        heartbeats = self.dn.heartbeats
        try:
            sums = await asyncio.to_thread(self.verify, block_id)
        except NotFound:
            if ordered:
                heartbeats.corrupt(block_id)
                log.warning("block %s is missing: reported", block_id)
            return not ordered  # otherwise deleted since it was listed: nothing to report
        if sums is None and self.dn.store.exists(block_id):
            self.dn.store.quarantine(block_id)
            heartbeats.corrupt(block_id)
            self.corrupt_found += 1
            log.warning("block %s failed verification: quarantined", block_id)
        elif sums is not None and ordered:
            heartbeats.received(wire.Received(block_id, sums.size, sums.crc, "v"))
        return sums is not None

    def _cursor(self) -> str:
        try:
            return self.cursor_file.read_text().strip()
        except FileNotFoundError:
            return ""

    async def run_once(self) -> int:
        """One pass over every block; returns how many were found corrupt."""
        rate = self.dn.config.scan_rate
        cursor = self._cursor()
        found = 0
        for block_id in sorted(b for b in self.dn.store.list() if b > cursor):
            started = time.monotonic()
            try:
                size = self.dn.store.path(block_id).stat().st_size
            except FileNotFoundError:
                continue  # deleted since the listing
            if not await self.verify_and_report(block_id):
                found += 1
            self.verified += 1
            self.cursor_file.write_text(block_id)
            if rate > 0:
                await asyncio.sleep(max(0.0, size / rate - (time.monotonic() - started)))
        self.cursor_file.unlink(missing_ok=True)  # the pass is complete; the next starts over
        self.dn.heartbeats.report_soon()  # a replica gone from the disk shows in no pass
        return found

    async def run_forever(self) -> None:
        interval = self.dn.config.scan_interval
        while True:
            started = time.monotonic()
            try:
                found = await self.run_once()
                if found:
                    log.warning("scrub pass found %d corrupt blocks", found)
            except OSError:
                log.exception("scrub pass failed")
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
