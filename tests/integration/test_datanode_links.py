"""A data node given one name node twice heartbeats to it once: one link, one incarnation, so
the name node does not take every heartbeat for a restart asking for a full block report."""

from __future__ import annotations

import time
from collections.abc import Callable

from pydfs.cluster import LocalCluster
from tests.integration.test_metrics import scrape, value

ROUTE = "/v1/datanodes/report"


def reports(url: str) -> float:
    return value(scrape(url), "pydfs_requests_total", route=ROUTE)


def test_a_name_node_named_twice_gets_one_block_report(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    cluster = cluster_factory(0)
    before = reports(cluster.url)
    cluster.add_datanode(["--namenode", f"{cluster.url},{cluster.url}/"])
    time.sleep(3)  # 15 heartbeats at the tests' interval of 0.2 s
    sent = reports(cluster.url) - before
    assert 1 <= sent <= 2, f"{sent:g} block reports in 3 s"
