"""The name node's own figures in ``/metrics`` (see ``pydfs.metrics`` for the list)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pydfs.metrics import counter, gauge

if TYPE_CHECKING:
    from pydfs.namenode import NameNode


class Census(Collector):
    """The name node's figures for ``/metrics``: counts from the store, read by ``refresh``
    just before each scrape (the store is async, a collector is not), and the replicator's and
    registry's figures from memory."""

    def __init__(self, nn: NameNode) -> None:
        self.nn = nn
        self.kinds: dict[str, int] = {}
        self.blocks = 0
        self.uploads = 0

    async def refresh(self) -> None:
        async with self.nn.store.read() as tx:
            self.kinds = await tx.inodes.counts()
            self.blocks = await tx.blocks.count()
            self.uploads = len(await tx.uploads.all())

    def collect(self) -> Iterable[Metric]:
        nn, kinds, blocks = self.nn, self.kinds, self.blocks
        health = nn.replicator.health
        nodes = nn.membership.nodes
        live = sum(nn.membership.is_live(node_id) for node_id in nodes)
        yield gauge("pydfs_namenode_files", "Files in the namespace.", kinds.get("f", 0))
        yield gauge(
            "pydfs_namenode_directories",
            "Directories in the namespace, the root included.",
            kinds.get("d", 0),
        )
        yield gauge("pydfs_namenode_blocks", "Blocks named by the namespace.", blocks)
        yield gauge(
            "pydfs_namenode_under_replicated_blocks",
            "Blocks with fewer replicas than their replication factor, as of the last scan.",
            health.under_replicated,
        )
        yield gauge(
            "pydfs_namenode_over_replicated_blocks",
            "Blocks with more replicas than their replication factor, as of the last scan.",
            health.over_replicated,
        )
        yield gauge(
            "pydfs_namenode_missing_blocks",
            "Blocks with no replica on a live data node, as of the last scan.",
            health.missing,
        )
        yield gauge(
            "pydfs_namenode_corrupt_blocks",
            "Blocks with a replica found corrupt and not yet healed.",
            len(nn.replicator.corrupt),
        )
        datanodes = GaugeMetricFamily(
            "pydfs_namenode_datanodes", "Data nodes known, by liveness.", labels=["state"]
        )
        datanodes.add_metric(["live"], live)
        datanodes.add_metric(["dead"], len(nodes) - live)
        yield datanodes
        yield gauge(
            "pydfs_namenode_datanodes_refusing_blocks",
            "Live data nodes whose disk refused a block within the last minute.",
            sum(1 for n in nn.membership.live() if n.write_failure),
        )
        yield counter(
            "pydfs_namenode_replication_copies",
            "Block copies ordered by the replicator and completed.",
            nn.replicator.blocks_copied,
        )
        yield counter(
            "pydfs_namenode_replication_bytes",
            "Bytes of the block copies completed.",
            nn.replicator.bytes_copied,
        )
        lead = nn.leadership
        yield gauge(
            "pydfs_namenode_leader",
            "1 while this name node leads the background work (replication, block reports).",
            int(lead.leads()),
        )
        yield gauge(
            "pydfs_namenode_leader_epoch",
            "The lease's epoch as last seen: one more at every change of leader.",
            lead.lease.epoch if lead.lease else 0,
        )
        yield counter(
            "pydfs_namenode_leader_takeovers",
            "Times this name node took the lead.",
            lead.took_lead,
        )
        yield counter(
            "pydfs_namenode_leader_refused_writes",
            "Leader-only changes dropped because the lead had moved to another name node.",
            lead.refused,
        )
        yield gauge(
            "pydfs_namenode_metadata_up",
            "1 if the last renewal of the lease reached the metadata store.",
            int(lead.store_up),
        )
        yield counter(
            "pydfs_namenode_metadata_connections_lost",
            "Connections to the metadata database lost (broken, or to a server now a standby): "
            "a failover of the database shows as some.",
            nn.store.lost,
        )
        yield gauge(
            "pydfs_namenode_uploads_in_flight",
            "Uploads started and neither committed, aborted nor expired.",
            self.uploads,
        )
