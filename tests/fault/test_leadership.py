"""Two name nodes on one PostgreSQL: one leads the background work; the lead moves when the
leader dies or is stopped, and the background work goes on under the new leader.

Real processes: the leader is SIGKILLed, or SIGSTOPped past its lease (a partition as the
leader itself sees one: it learns nothing until it runs again)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from pydfs import wire
from pydfs.cluster import LocalCluster
from tests.conftest import BLOCK_SIZE, node_id

LEASE = 1.5  # seconds: the lead moves within about LEASE * 4 / 3 of the leader's death
MOVES_WITHIN = 30.0  # catches a hang only; what it takes is measured in bench/, not here


def states(cluster: LocalCluster) -> list[wire.NameNodeState | None]:
    """Each name node's view of itself; None for one that does not answer."""
    found: list[wire.NameNodeState | None] = []
    for node in cluster.namenodes:
        if not node.running or _stopped(node.pid):
            found.append(None)
            continue
        with cluster.client(namenode=node.url, call_timeout=2) as fs:
            found.append(fs.namenode_state())
    return found


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def leader_index(cluster: LocalCluster) -> int:
    leading = [i for i, s in enumerate(states(cluster)) if s is not None and s.leads]
    assert len(leading) <= 1, f"two name nodes lead at once: {states(cluster)}"
    return leading[0] if leading else -1


def wait_for_leader(cluster: LocalCluster, index: int) -> float:
    started = time.monotonic()
    cluster.wait_until(lambda: leader_index(cluster) == index, MOVES_WITHIN, "the lead to move")
    return time.monotonic() - started


def healthy(cluster: LocalCluster, index: int, path: str) -> bool:
    with cluster.client(namenode=cluster.namenodes[index].url) as fs:
        return fs.fsck(path).status == "HEALTHY"


def holders(cluster: LocalCluster, index: int, path: str) -> list[set[str]]:
    """Per block, the live data nodes that hold it."""
    with cluster.client(namenode=cluster.namenodes[index].url) as fs:
        return [{n.id for n in b.nodes if n.live} for b in fs.info(path, read=True).blocks]


def start(
    cluster_factory: Callable[..., LocalCluster], postgres_url: str, datanodes: int
) -> LocalCluster:
    cluster = cluster_factory(
        datanodes,
        metadata=postgres_url,
        namenodes=2,
        namenode_args=["--leader-lease", str(LEASE)],
    )
    cluster.wait_until(lambda: leader_index(cluster) == 0, MOVES_WITHIN, "a leader")
    return cluster


def test_the_lead_moves_when_the_leader_is_killed_and_healing_goes_on(
    cluster_factory: Callable[..., LocalCluster], postgres_url: str
) -> None:
    cluster = start(cluster_factory, postgres_url, 3)
    first, second = cluster.namenodes
    payload = os.urandom(2 * BLOCK_SIZE + 1)
    with cluster.client(namenode=second.url) as fs:
        fs.write_bytes("/tmp/kept", payload)
    assert states(cluster)[1].leader == first.url  # type: ignore[union-attr]
    first.kill()
    wait_for_leader(cluster, 1)
    after = states(cluster)[1]
    assert after is not None and after.epoch >= 2 and after.takeovers == 1
    # A data node holding the file dies: the new leader must order the copies.
    victim = sorted(holders(cluster, 1, "/tmp/kept")[0])[0]
    next(n for n in cluster.datanodes if node_id(n) == victim).kill()
    cluster.wait_until(
        lambda: (
            all(len(h) == 2 for h in holders(cluster, 1, "/tmp/kept"))
            and healthy(cluster, 1, "/tmp/kept")
        ),
        MOVES_WITHIN,
        "the new leader to heal the file",
    )
    with cluster.client(namenode=second.url) as fs:
        assert fs.read_bytes("/tmp/kept") == payload


def test_a_stopped_leader_wakes_as_a_standby_and_the_new_leader_does_the_work(
    cluster_factory: Callable[..., LocalCluster], postgres_url: str
) -> None:
    cluster = start(cluster_factory, postgres_url, 3)
    first = cluster.namenodes[0]
    with cluster.client(namenode=first.url) as fs:
        fs.write_bytes("/tmp/f", os.urandom(BLOCK_SIZE))
    os.kill(first.pid, signal.SIGSTOP)
    try:
        wait_for_leader(cluster, 1)
        epoch = states(cluster)[1].epoch  # type: ignore[union-attr]
    finally:
        os.kill(first.pid, signal.SIGCONT)
    # Awake, the old leader learns at its next renewal that the lead moved, and takes no part.
    cluster.wait_until(
        lambda: states(cluster)[0] is not None and not states(cluster)[0].leads,  # type: ignore[union-attr]
        MOVES_WITHIN,
        "the old leader to stand by",
    )
    assert leader_index(cluster) == 1 and states(cluster)[1].epoch == epoch  # type: ignore[union-attr]
    # A change made through the standby reaches the leader's replication (a nudge).
    with cluster.client(namenode=first.url) as fs:
        fs.setrep("/tmp/f", 3)
    cluster.wait_until(
        lambda: (
            all(len(h) == 3 for h in holders(cluster, 0, "/tmp/f"))
            and healthy(cluster, 0, "/tmp/f")
        ),
        MOVES_WITHIN,
        "the leader to copy the file a third time",
    )


@pytest.mark.sqlite_only("a store only one process can open lets a restarted leader skip the lease")
def test_a_name_node_alone_on_sqlite_leads_at_once_after_a_crash(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    """No other process can use its store, so the lease of the process that crashed is not
    waited out (a minute here) before replication and expiry go on."""
    cluster = cluster_factory(1, namenode_args=["--leader-lease", "60"])
    cluster.namenode.kill()
    cluster.restart_namenode()
    state = states(cluster)[0]
    assert state is not None and state.leads and state.epoch == 2
