"""The data node's own figures in ``/metrics`` (see ``pydfs.metrics`` for the list)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from pydfs.metrics import counter, gauge

if TYPE_CHECKING:
    from pydfs.datanode import DataNode


@dataclass(slots=True)
class Traffic:
    """What a data node's block routes moved: plain counts, bumped once per block."""

    blocks_received: int = 0
    bytes_written: int = 0  # block bytes received, verified and made durable
    block_reads: int = 0
    bytes_read: int = 0  # block bytes served to readers
    arrival_failures: int = 0  # blocks refused because a chunk (or the whole) failed its CRC


class Census(Collector):
    """The data node's figures: its block routes' traffic, the scrubber's and the copier's
    counts, and the block store's occupancy, read when scraped."""

    def __init__(self, dn: DataNode, traffic: Traffic) -> None:
        self.dn = dn
        self.traffic = traffic

    def collect(self) -> Iterable[Metric]:
        t, dn = self.traffic, self.dn
        yield counter(
            "pydfs_datanode_bytes_written",
            "Block bytes received, verified and stored (client writes, pipelines and copies).",
            t.bytes_written,
        )
        yield counter(
            "pydfs_datanode_blocks_received",
            "Blocks received, verified and stored.",
            t.blocks_received,
        )
        yield counter(
            "pydfs_datanode_bytes_read",
            "Block bytes served to readers (reads that completed).",
            t.bytes_read,
        )
        yield counter("pydfs_datanode_block_reads", "Block reads served.", t.block_reads)
        failures = CounterMetricFamily(
            "pydfs_datanode_checksum_failures",
            "Checksum failures: blocks refused on arrival because a chunk failed its CRC, and "
            "stored replicas that the scrubber or a verify order found bad (and quarantined).",
            labels=["found"],
        )
        failures.add_metric(["arrival"], t.arrival_failures)
        failures.add_metric(["stored"], dn.scanner.corrupt_found)
        yield failures
        yield counter(
            "pydfs_datanode_blocks_verified",
            "Replicas the scrubber verified.",
            dn.scanner.verified,
        )
        yield counter(
            "pydfs_datanode_copies_sent",
            "Block copies sent to other data nodes on the name node's orders.",
            dn.transfers.copies_sent,
        )
        yield counter(
            "pydfs_datanode_copy_bytes_sent",
            "Bytes of the block copies sent.",
            dn.transfers.bytes_sent,
        )
        yield counter(
            "pydfs_datanode_copies_failed",
            "Block copies that failed.",
            dn.transfers.copies_failed,
        )
        store = dn.store
        yield gauge("pydfs_datanode_blocks", "Block replicas stored.", store.count)
        yield gauge("pydfs_datanode_disk_used_bytes", "Bytes of stored block files.", store.used)
        yield gauge(
            "pydfs_datanode_disk_free_bytes",
            "Bytes still free for blocks (disk space, capped by the configured capacity).",
            store.free(),
        )
