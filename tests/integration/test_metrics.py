"""``GET /metrics`` on real processes: the counters move by exactly what a workload did."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from pydfs import NotFound, checksum
from pydfs.client.transfer import SMALL_WRITE
from pydfs.cluster import LocalCluster
from pydfs.wire import CHUNK_SIZE
from tests.conftest import BLOCK_SIZE, block_path, node_id

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"] == CONTENT_TYPE_LATEST
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of *name*'s samples whose labels include *labels* (0 when there are none, but
    *name* itself must be exported, so that a missing metric never passes for a zero)."""
    assert any(n == name for n, _ in samples), f"{name} is not exported"
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= lbls)


def total(scrapes: list[Samples], name: str, **labels: str) -> float:
    return sum(value(s, name, **labels) for s in scrapes)


def scrape_datanodes(cluster: LocalCluster) -> list[Samples]:
    return [scrape(node.url) for node in cluster.datanodes]


def labels_of(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(lbls)[label] for n, lbls in samples.items() if n == name}


def test_counters_follow_a_workload(shared_cluster: LocalCluster) -> None:
    cluster = shared_cluster
    sizes = [3 * BLOCK_SIZE + 17, 1000, BLOCK_SIZE // 2 + 3]
    blocks = sum(-(-size // BLOCK_SIZE) for size in sizes)
    files = {f"/m/f{i}": os.urandom(size) for i, size in enumerate(sizes)}
    nn_before, dn_before = scrape(cluster.url), scrape_datanodes(cluster)

    with cluster.client() as fs:
        fs.mkdir("/m")
        for path, data in files.items():
            fs.write_bytes(path, data)
        assert fs.read_bytes("/m/f0") == files["/m/f0"]
        fs.delete("/m/f1")
        with pytest.raises(NotFound):
            fs.info("/m/missing")
        with pytest.raises(urllib.error.HTTPError) as no_route:
            urllib.request.urlopen(f"{cluster.url}/v1/no/such/route/0123abcd", timeout=10)
        assert no_route.value.code == 404
        no_route.value.close()
        left = [f for _, _, names in fs.walk("/") for f in names]

    nn, dn = scrape(cluster.url), scrape_datanodes(cluster)

    def moved(name: str, **labels: str) -> float:
        return value(nn, name, **labels) - value(nn_before, name, **labels)

    def dn_moved(name: str, **labels: str) -> float:
        return total(dn, name, **labels) - total(dn_before, name, **labels)

    # Every block went to both data nodes (replication 2); only the file read back was served.
    assert dn_moved("pydfs_datanode_bytes_written_total") == sum(sizes) * 2
    assert dn_moved("pydfs_datanode_blocks_received_total") == blocks * 2
    assert dn_moved("pydfs_datanode_bytes_read_total") == sizes[0]
    assert dn_moved("pydfs_datanode_checksum_failures_total") == 0
    put = {"route": "/v1/blocks/{id}", "method": "PUT", "status": "200"}
    assert dn_moved("pydfs_requests_total", role="datanode", **put) == blocks * 2
    for samples in dn:
        assert labels_of(samples, "pydfs_requests_total", "route") <= {
            "/v1/health",
            "/v1/blocks/{id}",
            "/metrics",
        }

    # Name node: request counts by route template and status.
    # Small files take their leases from batches (1, then 2...); larger ones start an upload.
    small = sum(size <= SMALL_WRITE for size in sizes)
    calls = {"/v1/uploads": len(sizes) - small, "/v1/uploads/batch": small.bit_length()}
    calls["/v1/uploads/{id}/commit"] = len(files)
    for route, count in calls.items():
        ok = {"role": "namenode", "route": route, "method": "POST"}
        assert moved("pydfs_requests_total", status="200", **ok) == count
        assert moved("pydfs_request_seconds_count", **ok) == count
    stat = {"role": "namenode", "route": "/v1/fs/stat", "method": "GET"}
    assert moved("pydfs_requests_total", status="404", **stat) == 1
    assert moved("pydfs_requests_total", route="unmatched", status="404") == 1
    assert not any("0123abcd" in r for r in labels_of(nn, "pydfs_requests_total", "route"))

    # Name node: the namespace and the cluster as they stand.
    assert len(left) == len(files) - 1
    assert value(nn, "pydfs_namenode_files") == len(left)
    assert moved("pydfs_namenode_files") == len(left)
    assert moved("pydfs_namenode_directories") == 1
    assert value(nn, "pydfs_namenode_datanodes", state="live") == 2
    assert value(nn, "pydfs_namenode_datanodes", state="dead") == 0
    assert value(nn, "pydfs_namenode_uploads_in_flight") == 0
    assert value(nn, "pydfs_namenode_missing_blocks") == 0

    # The deleted file's replicas go with the next heartbeats: the gauges follow.
    kept = [sizes[0], sizes[2]]
    kept_blocks = sum(-(-size // BLOCK_SIZE) for size in kept)
    # Each block file ends with its CRCs (4 bytes a chunk) and a footer: that is on disk too.
    on_disk = sum(
        min(BLOCK_SIZE, size - start)
        + 4 * checksum.chunk_count(min(BLOCK_SIZE, size - start), CHUNK_SIZE)
        + checksum.FOOTER_SIZE
        for size in kept
        for start in range(0, size, BLOCK_SIZE)
    )
    grown = {
        "pydfs_datanode_blocks": kept_blocks * 2,
        "pydfs_datanode_disk_used_bytes": on_disk * 2,
    }

    def gauges_settled() -> bool:
        now = scrape_datanodes(cluster)
        return (
            all(total(now, name) - total(dn_before, name) == grown[name] for name in grown)
            and value(scrape(cluster.url), "pydfs_namenode_blocks")
            == value(nn_before, "pydfs_namenode_blocks") + kept_blocks
        )

    cluster.wait_until(gauges_settled, 15, "block gauges to count only the files kept")
    for samples in scrape_datanodes(cluster):
        assert value(samples, "pydfs_datanode_disk_free_bytes") > 0


def test_a_rotten_replica_is_counted(cluster_factory: Callable[..., LocalCluster]) -> None:
    cluster = cluster_factory(2)
    data = os.urandom(BLOCK_SIZE * 2)
    with cluster.client() as fs:
        fs.write_bytes("/f", data)
        block = (fs.info("/f").blocks or [])[0]
        holder = next(n for n in cluster.datanodes if node_id(n) == block.nodes[0].id)
        other = next(n for n in cluster.datanodes if n is not holder)
        assert value(scrape(holder.url), "pydfs_datanode_checksum_failures_total") == 0
        path = block_path(holder, block.id)
        raw = bytearray(path.read_bytes())
        raw[12345] ^= 0x10
        path.write_bytes(bytes(raw))

        def read_until_counted() -> bool:
            # Readers take replicas in random order: one that meets the bad replica fails over
            # (the data stays right) and reports it; the holder verifies it and quarantines it.
            assert fs.read_bytes("/f") == data
            return value(scrape(holder.url), "pydfs_datanode_checksum_failures_total") > 0

        cluster.wait_until(read_until_counted, 15, "the bad replica counted")
        failures = scrape(holder.url)
        assert value(failures, "pydfs_datanode_checksum_failures_total", found="stored") == 1
        assert value(failures, "pydfs_datanode_checksum_failures_total", found="arrival") == 0
        assert value(scrape(other.url), "pydfs_datanode_checksum_failures_total") == 0

        # The name node has the good replica copied back: one copy, sent by the other node.
        def healed() -> bool:
            nn = scrape(cluster.url)
            return value(nn, "pydfs_namenode_replication_copies_total") == 1

        cluster.wait_until(healed, 20, "the block copied back")
        nn = scrape(cluster.url)
        assert value(nn, "pydfs_namenode_replication_bytes_total") == BLOCK_SIZE
        assert value(scrape(other.url), "pydfs_datanode_copies_sent_total") == 1
        assert value(scrape(other.url), "pydfs_datanode_copy_bytes_sent_total") == BLOCK_SIZE
        assert value(scrape(holder.url), "pydfs_datanode_copies_sent_total") == 0
