"""The Replicator over a real namespace, and the NameNode facade that feeds it heartbeats.

Live data nodes are faked with heartbeats; a node dies by moving its last heartbeat into the past.
Every scan is one ``run_once()``: no test sleeps.
"""

import os
import time
from types import SimpleNamespace

import pytest
from tests.unit.namenode.parts import Blocking, parts_loop, plant_grant, unwrap

from pydfs import wire
from pydfs.config import NameNodeConfig
from pydfs.errors import InvalidArgument, NotFound
from pydfs.namenode import NameNode, replication
from pydfs.namenode.auth import User
from pydfs.namenode.replication import Replicator
from pydfs.namenode.uploads import MAX_REPLICATION

MiB = 1024 * 1024
OWNER = User("alice", admin=True)  # admins pass permission checks: not tested here
SIZE = 1000  # bytes in every test block


def bid(n: int) -> str:
    return f"{n:032x}"


def live(membership, *node_ids, free=100 * MiB, incarnation="inc-1"):
    for node_id in node_ids:
        membership.heartbeat(
            wire.Heartbeat(node_id, f"http://{node_id}.test", incarnation, free, 0, free, 0)
        )


def kill(membership, node_id):
    membership.nodes[node_id].last_heartbeat = time.monotonic() - 1000


def put(ns, path, replication, blocks):
    """A committed file whose blocks (id → nodes holding it) have the replicas given."""
    return ns.commit_file(
        path,
        OWNER,
        replication=replication,
        block_size=4096,
        blocks=[wire.StoredBlock(b, SIZE, 1234, nodes) for b, nodes in blocks.items()],
        overwrite=False,
    )


def got(n: int, size: int = SIZE, crc: int = 1234, how: str = "c") -> wire.Received:
    """A replica as a data node reports it (by default an ordered copy), with the size and CRC
    ``put`` records."""
    return wire.Received(bid(n), size, crc, how)  # type: ignore[arg-type]


def holders(ns, block):
    db = ns.store.db
    return {n for (n,) in db.execute("SELECT node FROM replicas WHERE block = ?", (block,))}


def copies(rep, source):
    """Orders for *source* as {(block, target id)}; checks their shape on the way."""
    found = set()
    for command in rep.orders_for(source):
        assert command.op == "replicate"
        assert command.target is not None and command.target.live
        assert command.target.url == f"http://{command.target.id}.test"
        found |= {(b, command.target.id) for b in command.blocks}
    return found


def replicator(ns, **kwargs):
    parts = unwrap(ns)
    return Blocking(Replicator(parts.blockmap, parts.membership, **kwargs), parts_loop(ns))


@pytest.fixture
def rep(ns):
    return replicator(ns)


# --- under-replication ----------------------------------------------------------------------


def test_under_replicated_block_is_copied_to_a_node_without_it(ns, rep):
    live(ns.membership, "dn-1", "dn-2", "dn-3")
    put(ns, "/f", 2, {bid(1): ["dn-1"]})
    health = rep.run_once()
    assert (health.under_replicated, health.copies_ordered, health.missing) == (1, 1, 0)
    orders = copies(rep, "dn-1")
    assert len(orders) == 1
    ((block, target),) = orders
    assert block == bid(1) and target in {"dn-2", "dn-3"}
    assert rep.orders_for("dn-1") == []  # handed out once
    assert copies(rep, "dn-2") == copies(rep, "dn-3") == set()


def test_a_copy_in_flight_is_not_ordered_twice(ns, rep):
    live(ns.membership, "dn-1", "dn-2", "dn-3")
    put(ns, "/f", 2, {bid(1): ["dn-1"]})
    rep.run_once()
    assert len(copies(rep, "dn-1")) == 1
    health = rep.run_once()
    assert (health.under_replicated, health.copies_ordered) == (1, 0)
    assert copies(rep, "dn-1") == set()


def test_received_completes_the_copy(ns, rep):
    live(ns.membership, "dn-1", "dn-2", "dn-3")
    put(ns, "/f", 3, {bid(1): ["dn-1"]})
    rep.run_once()
    orders = copies(rep, "dn-1")
    assert {t for _, t in orders} == {"dn-2", "dn-3"}
    for _, target in orders:
        rep.received(target, [got(1)])
    assert holders(ns, bid(1)) == {"dn-1", "dn-2", "dn-3"}
    assert (rep.blocks_copied, rep.bytes_copied) == (2, 2 * SIZE)
    health = rep.run_once()
    assert (health.under_replicated, health.copies_ordered, health.over_replicated) == (0, 0, 0)
    assert copies(rep, "dn-1") == set()
    assert rep._in_flight == {}


def test_single_replica_blocks_get_the_scarce_copy_slots_first(ns):
    rep = replicator(ns, max_copies_per_node=1)
    live(ns.membership, "dn-1", "dn-3")
    live(ns.membership, "dn-2", free=10)  # too full to take a block: dn-3 is the only target
    two, one = bid(1), bid(2)  # the two-replica block sorts first by id
    put(ns, "/two", 3, {two: ["dn-1", "dn-2"]})  # two replicas, one missing
    put(ns, "/one", 2, {one: ["dn-1"]})  # a single replica, one missing
    health = rep.run_once()
    assert (health.under_replicated, health.copies_ordered) == (2, 1)
    assert copies(rep, "dn-1") | copies(rep, "dn-2") == {(one, "dn-3")}

    rep.received("dn-3", [wire.Received(one, SIZE, 1234, "c")])  # dn-3 has a free slot again
    rep.run_once()
    assert copies(rep, "dn-1") | copies(rep, "dn-2") == {(two, "dn-3")}


def test_copies_per_source_are_limited(ns):
    rep = replicator(ns, max_copies_per_node=2)
    live(ns.membership, "dn-1", "dn-2", "dn-3", "dn-4")
    put(ns, "/f", 2, {bid(i): ["dn-1"] for i in range(5)})
    health = rep.run_once()
    assert (health.under_replicated, health.copies_ordered) == (5, 2)
    assert len(copies(rep, "dn-1")) == 2


def test_missing_blocks_are_counted_and_get_no_orders(ns, rep):
    live(ns.membership, "dn-1", "dn-2", "dn-3")
    kill(ns.membership, "dn-1")
    put(ns, "/f", 2, {bid(1): ["dn-1"], bid(2): []})
    health = rep.run_once()
    assert (health.missing, health.under_replicated, health.copies_ordered) == (2, 0, 0)
    assert all(rep.orders_for(n) == [] for n in ("dn-1", "dn-2", "dn-3"))


def test_an_idle_cluster_is_not_rescanned(ns, rep):
    live(ns.membership, "dn-1", "dn-2")
    put(ns, "/f", 2, {bid(1): ["dn-1", "dn-2"]})
    rep.run_once()
    ns.drop_replicas("dn-2", [bid(1)])  # behind the replicator's back: nothing says so
    assert rep.run_once().under_replicated == 0
    rep.dirty = True
    assert rep.run_once().under_replicated == 1


# --- over-replication -----------------------------------------------------------------------


def test_surplus_replicas_are_trimmed_from_the_fullest_nodes(ns, rep):
    live(ns.membership, "dn-1", free=100 * MiB)
    live(ns.membership, "dn-2", free=200 * MiB)
    live(ns.membership, "dn-3", free=300 * MiB)
    put(ns, "/f", 3, {bid(1): ["dn-1", "dn-2", "dn-3"]})
    assert rep.run_once().over_replicated == 0
    assert ns.setrep("/f", 1) == 1
    rep.dirty = True
    health = rep.run_once()
    assert (health.over_replicated, health.replicas_trimmed) == (1, 2)
    assert holders(ns, bid(1)) == {"dn-3"}
    assert ns.trash_for("dn-1") == [bid(1)]
    assert ns.trash_for("dn-2") == [bid(1)]
    assert ns.trash_for("dn-3") == []
    rep.dirty = True
    health = rep.run_once()
    assert (health.over_replicated, health.replicas_trimmed, health.copies_ordered) == (0, 0, 0)


def test_a_shared_block_keeps_the_highest_replication_of_its_files(ns, rep):
    live(ns.membership, "dn-1", "dn-2", "dn-3")
    put(ns, "/f", 3, {bid(1): ["dn-1", "dn-2", "dn-3"]})
    ns.copy("/f", "/g", OWNER)
    ns.setrep("/g", 1)
    rep.dirty = True
    health = rep.run_once()
    assert (health.over_replicated, health.replicas_trimmed) == (0, 0)
    assert holders(ns, bid(1)) == {"dn-1", "dn-2", "dn-3"}


# --- nodes that die, restart or fail --------------------------------------------------------


def test_a_copy_to_a_dead_target_is_ordered_elsewhere(ns, rep):
    live(ns.membership, "dn-1", "dn-2", "dn-3")
    put(ns, "/f", 2, {bid(1): ["dn-1"]})
    rep.run_once()
    ((_, first),) = copies(rep, "dn-1")
    kill(ns.membership, first)
    health = rep.run_once()
    assert health.copies_ordered == 1
    other = ({"dn-2", "dn-3"} - {first}).pop()
    assert copies(rep, "dn-1") == {(bid(1), other)}


def test_an_order_not_yet_handed_out_is_withdrawn_when_its_target_dies(ns, rep):
    live(ns.membership, "dn-1", "dn-2", "dn-3")
    put(ns, "/f", 2, {bid(1): ["dn-1"]})
    rep.run_once()
    (first,) = {c.target for c in rep._in_flight[bid(1)]}
    kill(ns.membership, first)
    rep.run_once()
    other = ({"dn-2", "dn-3"} - {first}).pop()
    # dn-1 heartbeats only now: it must not be sent to the dead node as well.
    assert copies(rep, "dn-1") == {(bid(1), other)}


def test_a_copy_from_a_dead_source_is_dropped_and_ordered_again_on_its_return(ns, rep):
    live(ns.membership, "dn-1", "dn-2", "dn-3")
    put(ns, "/f", 2, {bid(1): ["dn-1"]})
    rep.run_once()
    assert len(copies(rep, "dn-1")) == 1
    kill(ns.membership, "dn-1")
    health = rep.run_once()
    assert (health.missing, health.copies_ordered) == (1, 0)
    assert rep._in_flight == {}
    live(ns.membership, "dn-1")
    health = rep.run_once()
    assert (health.missing, health.copies_ordered) == (0, 1)
    assert len(copies(rep, "dn-1")) == 1


def test_a_copy_past_its_deadline_is_ordered_again(ns, monkeypatch):
    rep = replicator(ns, copy_timeout=120)
    live(ns.membership, "dn-1", "dn-2", "dn-3")
    put(ns, "/f", 2, {bid(1): ["dn-1"]})
    rep.run_once()
    assert len(copies(rep, "dn-1")) == 1
    assert rep.run_once().copies_ordered == 0  # in flight, within its deadline
    later = time.monotonic() + 121
    monkeypatch.setattr(replication, "time", SimpleNamespace(monotonic=lambda: later))
    # Nothing else happens in the cluster: the late copy alone must lead to a new order.
    assert rep.run_once().copies_ordered == 1
    assert len(copies(rep, "dn-1")) == 1


def test_forget_orders_after_a_restart(ns, rep):
    live(ns.membership, "dn-1", "dn-2", "dn-3")
    put(ns, "/f", 2, {bid(1): ["dn-1"]})
    rep.run_once()
    assert len(copies(rep, "dn-1")) == 1
    assert rep.run_once().copies_ordered == 0  # still in flight
    rep.forget_orders("dn-1")  # dn-1 restarted: the copy it was making is lost
    assert rep._in_flight == {}
    assert rep.run_once().copies_ordered == 1
    assert len(copies(rep, "dn-1")) == 1


def test_forget_orders_withdraws_orders_not_handed_out(ns, rep):
    live(ns.membership, "dn-1", "dn-2", "dn-3")
    put(ns, "/f", 2, {bid(1): ["dn-1"]})
    rep.run_once()
    rep.forget_orders("dn-1")
    assert rep.orders_for("dn-1") == []


def test_forget_orders_of_a_target_drops_copies_to_it(ns, rep):
    live(ns.membership, "dn-1", "dn-2", "dn-3")
    put(ns, "/f", 2, {bid(1): ["dn-1"]})
    rep.run_once()
    ((_, target),) = copies(rep, "dn-1")
    rep.forget_orders(target)
    assert rep._in_flight == {}
    assert rep.run_once().copies_ordered == 1


def test_copy_failed_orders_the_copy_again(ns, rep):
    live(ns.membership, "dn-1", "dn-2", "dn-3")
    put(ns, "/f", 2, {bid(1): ["dn-1"]})
    rep.run_once()
    assert len(copies(rep, "dn-1")) == 1
    rep.copy_failed("dn-2", [bid(1)])  # not its source: changes nothing
    assert rep.run_once().copies_ordered == 0
    rep.copy_failed("dn-1", [bid(1)])
    assert rep.run_once().copies_ordered == 1
    assert len(copies(rep, "dn-1")) == 1


def test_corrupt_replica_is_dropped_and_the_block_healed(ns, rep):
    live(ns.membership, "dn-1", "dn-2", "dn-3")
    put(ns, "/f", 2, {bid(1): ["dn-1", "dn-2"]})
    rep.run_once()
    rep.corrupt_replicas("dn-2", [bid(1)])
    assert holders(ns, bid(1)) == {"dn-1"}
    assert rep.corrupt == {bid(1)}
    report = ns.fsck(
        "/", {"dn-1", "dn-2", "dn-3"}, {"dn-1", "dn-2", "dn-3"}, rep.corrupt, files=False
    )
    assert (report.corrupt, report.under_replicated) == (1, 1)

    health = rep.run_once()
    assert (health.under_replicated, health.copies_ordered) == (1, 1)
    assert rep.corrupt == {bid(1)}  # not healed yet
    ((_, target),) = copies(rep, "dn-1")
    rep.received(target, [got(1)])
    rep.run_once()
    assert rep.corrupt == set()
    assert len(holders(ns, bid(1))) == 2


def test_corrupt_replicas_with_no_blocks_changes_nothing(ns, rep):
    live(ns.membership, "dn-1")
    rep.run_once()
    rep.corrupt_replicas("dn-1", [])
    assert rep.corrupt == set()
    assert rep.dirty is False


def test_received_unknown_blocks_go_to_the_trash_unless_in_flight(ns, rep):
    live(ns.membership, "dn-1")
    plant_grant(ns, bid(8), ["dn-1"])
    plant_grant(ns, bid(9), ["dn-2"])
    rep.received("dn-1", [got(7), got(8), got(9)])
    # bid(9)'s grant named another node: planted here with a leftover token, say.
    assert sorted(ns.trash_for("dn-1")) == [bid(7), bid(9)]
    assert holders(ns, bid(7)) == holders(ns, bid(8)) == holders(ns, bid(9)) == set()


# --- decommissioning ------------------------------------------------------------------------


def test_a_decommissioning_node_is_not_a_copy_target(ns, rep):
    live(ns.membership, "dn-1", "dn-2")
    ns.membership.set_admin_state("dn-2", "decommissioning")
    put(ns, "/f", 2, {bid(1): ["dn-1"]})
    health = rep.run_once()
    assert (health.under_replicated, health.copies_ordered) == (1, 0)
    assert rep.orders_for("dn-1") == []
    assert [c.id for c in ns.membership.candidates()] == ["dn-1"]


def test_decommission_drains_the_node_then_completes(open_ns):
    ns = open_ns()
    rep = replicator(ns)
    live(ns.membership, "dn-1", "dn-2")
    put(ns, "/f", 1, {bid(1): ["dn-1"]})
    assert rep.run_once().under_replicated == 0
    ns.membership.set_admin_state("dn-1", "decommissioning")
    health = rep.run_once()
    assert (health.under_replicated, health.copies_ordered) == (1, 1)
    assert copies(rep, "dn-1") == {(bid(1), "dn-2")}  # the draining node is the source
    assert ns.membership.nodes["dn-1"].admin_state == "decommissioning"

    rep.received("dn-2", [got(1)])
    health = rep.run_once()
    assert (health.under_replicated, health.over_replicated) == (0, 0)
    assert ns.membership.nodes["dn-1"].admin_state == "decommissioned"
    assert holders(ns, bid(1)) == {"dn-1", "dn-2"}  # still readable where it was
    assert open_ns().membership.nodes["dn-1"].admin_state == "decommissioned"


def test_a_decommissioning_node_without_blocks_is_done_at_once(ns, rep):
    live(ns.membership, "dn-1", "dn-2")
    put(ns, "/f", 1, {bid(1): ["dn-2"]})
    rep.run_once()
    ns.membership.set_admin_state("dn-1", "decommissioning")
    rep.run_once()
    assert ns.membership.nodes["dn-1"].admin_state == "decommissioned"
    assert ns.membership.nodes["dn-2"].admin_state == "normal"


def test_a_decommission_waits_while_no_serving_node_can_take_the_blocks(ns, rep):
    live(ns.membership, "dn-1", "dn-2")
    put(ns, "/f", 2, {bid(1): ["dn-1", "dn-2"]})
    ns.membership.set_admin_state("dn-1", "decommissioning")
    health = rep.run_once()
    assert (health.under_replicated, health.copies_ordered) == (1, 0)
    assert ns.membership.nodes["dn-1"].admin_state == "decommissioning"


# --- the NameNode facade --------------------------------------------------------------------


@pytest.fixture
def nn(tmp_path, loop):
    config = NameNodeConfig(data_dir=tmp_path, replication=2, dead_after=30)
    node = loop.run_until_complete(NameNode.open(config))
    yield Blocking(node, loop)
    node.store.close()
    os.close(node._lock)


def beat(nn, node_id, incarnation="inc-1", **news):
    free = 100 * MiB
    return nn.heartbeat(
        wire.Heartbeat(node_id, f"http://{node_id}.test", incarnation, free, 0, free, 0, **news)
    )


def ops(reply):
    return [(c.op, sorted(c.blocks), c.target.id if c.target else None) for c in reply.commands]


def test_heartbeat_asks_a_new_node_for_a_report_until_it_sends_one(nn):
    assert beat(nn, "dn-1").send_report is True
    assert beat(nn, "dn-1").send_report is True
    nn.block_report(wire.BlockReport("dn-1", []))
    assert beat(nn, "dn-1").send_report is False
    assert beat(nn, "dn-1", incarnation="inc-2").send_report is True


def test_heartbeat_hands_out_delete_orders_once(nn):
    beat(nn, "dn-1")
    beat(nn, "dn-2")
    put(nn.commits, "/f", 2, {bid(1): ["dn-1", "dn-2"]})
    assert ops(beat(nn, "dn-1")) == []
    nn.namespace.delete("/f")
    assert ops(beat(nn, "dn-1")) == [("delete", [bid(1)], None)]
    assert ops(beat(nn, "dn-1")) == []
    assert ops(beat(nn, "dn-2")) == [("delete", [bid(1)], None)]


def test_heartbeat_trashes_a_received_block_nobody_knows_at_once(nn):
    reply = beat(nn, "dn-1", received=[got(9)])
    assert ops(reply) == [("delete", [bid(9)], None)]


def test_heartbeat_hands_out_replicate_orders_and_takes_the_copy(nn):
    beat(nn, "dn-1")
    beat(nn, "dn-2")
    put(nn.commits, "/f", 2, {bid(1): ["dn-1"]})
    nn.replicator.run_once()
    assert ops(beat(nn, "dn-2")) == []
    assert ops(beat(nn, "dn-1")) == [("replicate", [bid(1)], "dn-2")]
    beat(nn, "dn-2", received=[got(1)])
    assert holders(nn.namespace, bid(1)) == {"dn-1", "dn-2"}
    assert nn.replicator.run_once().under_replicated == 0
    assert nn.fsck("/", files=False).healthy == 1


def test_a_restarted_source_is_given_its_orders_again(nn):
    beat(nn, "dn-1")
    beat(nn, "dn-2")
    put(nn.commits, "/f", 2, {bid(1): ["dn-1"]})
    nn.replicator.run_once()
    assert ops(beat(nn, "dn-1")) == [("replicate", [bid(1)], "dn-2")]
    nn.replicator.run_once()
    assert ops(beat(nn, "dn-1")) == []  # in flight
    beat(nn, "dn-1", incarnation="inc-2")  # a new process: the copy it was making is gone
    nn.replicator.run_once()
    assert ops(beat(nn, "dn-1", incarnation="inc-2")) == [("replicate", [bid(1)], "dn-2")]


def test_a_failed_copy_reported_by_heartbeat_is_ordered_again(nn):
    beat(nn, "dn-1")
    beat(nn, "dn-2")
    put(nn.commits, "/f", 2, {bid(1): ["dn-1"]})
    nn.replicator.run_once()
    assert ops(beat(nn, "dn-1")) == [("replicate", [bid(1)], "dn-2")]
    beat(nn, "dn-1", failed_copies=[bid(1)])
    nn.replicator.run_once()
    assert ops(beat(nn, "dn-1")) == [("replicate", [bid(1)], "dn-2")]


def test_a_corrupt_replica_reported_by_heartbeat_shows_in_fsck(nn):
    beat(nn, "dn-1")
    beat(nn, "dn-2")
    put(nn.commits, "/f", 2, {bid(1): ["dn-1", "dn-2"]})
    beat(nn, "dn-2", corrupt=[bid(1)])
    assert holders(nn.namespace, bid(1)) == {"dn-1"}
    report = nn.fsck("/", files=False)
    assert (report.corrupt, report.under_replicated, report.healthy) == (1, 1, 0)
    nn.replicator.run_once()
    assert ops(beat(nn, "dn-1")) == [("replicate", [bid(1)], "dn-2")]
    beat(nn, "dn-2", received=[got(1)])
    nn.replicator.run_once()
    report = nn.fsck("/", files=False)
    assert (report.corrupt, report.under_replicated, report.healthy) == (0, 0, 1)


def test_suspect_yields_a_verify_command_on_that_nodes_next_heartbeat(nn):
    beat(nn, "dn-1")
    beat(nn, "dn-2")
    put(nn.commits, "/f", 2, {bid(1): ["dn-1", "dn-2"], bid(2): ["dn-1"], bid(4): ["dn-2"]})
    for _ in range(3):  # the same replica reported again is verified once
        nn.suspect(wire.CorruptReplica(bid(1), "dn-1"), OWNER)
    nn.suspect(wire.CorruptReplica(bid(2), "dn-1"), OWNER)
    nn.suspect(wire.CorruptReplica(bid(3), "dn-1"), OWNER)  # no such block
    nn.suspect(wire.CorruptReplica(bid(4), "dn-1"), OWNER)  # dn-1 does not hold it
    nn.suspect(wire.CorruptReplica(bid(1), "dn-unknown"), OWNER)
    assert ops(beat(nn, "dn-2")) == []
    assert ops(beat(nn, "dn-1")) == [("verify", [bid(1), bid(2)], None)]
    nn.suspect(wire.CorruptReplica(bid(1), "dn-1"), OWNER)  # verified just now
    assert ops(beat(nn, "dn-1")) == []
    assert ops(beat(nn, "dn-unknown")) == []


@pytest.mark.parametrize("replication", [0, -1, MAX_REPLICATION + 1])
def test_setrep_validates_the_range(nn, replication):
    put(nn.commits, "/f", 2, {bid(1): []})
    with pytest.raises(InvalidArgument):
        nn.setrep("/f", replication)
    assert nn.namespace.stat("/f").replication == 2


def test_setrep_sets_every_file_below_a_directory_and_rescans(nn):
    nn.namespace.mkdir("/d/e", OWNER, parents=True)
    put(nn.commits, "/d/a", 2, {bid(1): []})
    put(nn.commits, "/d/e/b", 2, {bid(2): []})
    put(nn.commits, "/c", 2, {bid(3): []})
    nn.replicator.run_once()
    assert nn.setrep("/d", MAX_REPLICATION) == 2
    assert nn.replicator.dirty is True
    assert nn.namespace.stat("/d/e/b").replication == MAX_REPLICATION
    assert nn.namespace.stat("/c").replication == 2
    assert nn.setrep("/c", 1) == 1


def test_fsck_counts_block_health_per_file(nn):
    for node in ("dn-1", "dn-2", "dn-3"):
        beat(nn, node)
    kill(nn.membership, "dn-3")
    nn.namespace.mkdir("/a", OWNER)
    put(nn.commits, "/a/healthy", 2, {bid(1): ["dn-1", "dn-2"]})
    put(nn.commits, "/a/under", 2, {bid(2): ["dn-1"], bid(3): ["dn-1", "dn-2"]})
    put(nn.commits, "/missing", 1, {bid(4): ["dn-3"]})
    report = nn.fsck("/", files=True)
    assert (report.files, report.blocks) == (3, 4)
    assert (report.healthy, report.under_replicated, report.missing) == (2, 1, 1)
    assert report.status != "HEALTHY"
    details = {
        h.path: (h.blocks, h.healthy, h.under_replicated, h.missing) for h in report.file_details
    }
    assert details == {
        "/a/healthy": (1, 1, 0, 0),
        "/a/under": (2, 1, 1, 0),
        "/missing": (1, 0, 0, 1),
    }
    sub = nn.fsck("/a", files=False)
    assert (sub.files, sub.blocks, sub.missing, sub.file_details) == (2, 3, 0, [])
    with pytest.raises(NotFound):
        nn.fsck("/nowhere", files=False)


def test_fsck_counts_replicas_on_a_draining_node_as_readable_not_healthy(nn):
    beat(nn, "dn-1")
    beat(nn, "dn-2")
    put(nn.commits, "/f", 1, {bid(1): ["dn-1"]})
    state = nn.decommission("dn-1")
    assert (state.id, state.admin_state, state.state) == ("dn-1", "decommissioning", "live")
    report = nn.fsck("/", files=False)
    assert (report.healthy, report.under_replicated, report.missing) == (0, 1, 0)
    assert nn.decommission("dn-1", undo=True).admin_state == "normal"
    with pytest.raises(NotFound):
        nn.decommission("dn-9")


def test_decommission_through_heartbeats(nn):
    beat(nn, "dn-1")
    beat(nn, "dn-2")
    put(nn.commits, "/f", 1, {bid(1): ["dn-1"]})
    nn.replicator.run_once()
    nn.decommission("dn-1")
    nn.replicator.run_once()
    assert ops(beat(nn, "dn-1")) == [("replicate", [bid(1)], "dn-2")]
    beat(nn, "dn-2", received=[got(1)])
    nn.replicator.run_once()
    assert nn.membership.nodes["dn-1"].admin_state == "decommissioned"
    assert nn.fsck("/", files=False).healthy == 1


def test_an_upload_committed_with_too_few_replicas_is_repaired(nn):
    for node in ("dn-1", "dn-2", "dn-3"):
        beat(nn, node)
    grant = nn.uploads.start(wire.UploadRequest("/f", replication=2, block_size=4096), OWNER)
    first = grant.block.targets[0].id
    stored = [wire.Received(grant.block.block_id, 100, 1234)]
    beat(nn, first, received=stored)  # stored, not yet committed
    nn.replicator.run_once()  # the scan happens to run before the commit
    # The second pipeline node failed: the writer commits with the one replica it has.
    stored = wire.StoredBlock(grant.block.block_id, 100, 1234, [first])
    nn.uploads.commit(grant.upload_id, wire.CommitRequest([stored]), OWNER)
    health = nn.replicator.run_once()
    assert (health.under_replicated, health.copies_ordered) == (1, 1)
    assert [c.op for c in beat(nn, first).commands] == ["replicate"]


# --- reopening ------------------------------------------------------------------------------


def test_replication_state_survives_in_the_store(open_ns):
    ns = open_ns()
    live(ns.membership, "dn-1", "dn-2")
    put(ns, "/f", 2, {bid(1): ["dn-1"]})
    rep = replicator(ns)
    rep.run_once()
    rep.received("dn-2", [got(1)])
    ns.store.close()
    assert holders(open_ns(), bid(1)) == {"dn-1", "dn-2"}


def refusing(membership, node_id, why="Input/output error", free=100 * MiB):
    beat = wire.Heartbeat(node_id, f"http://{node_id}.test", "inc-1", free, 0, free, 0)
    beat.write_failure = why
    membership.heartbeat(beat)


def test_a_node_whose_disk_refused_a_block_gets_a_copy_only_when_no_other_will_do(ns, rep):
    """Though it has by far the most room (which placement otherwise favours)."""
    live(ns.membership, "dn-1", "dn-2")
    refusing(ns.membership, "dn-3", free=100_000 * MiB)
    put(ns, "/f", 3, {bid(1): ["dn-1", "dn-2"]})
    put(ns, "/g", 2, {bid(2): ["dn-1"]})
    health = rep.run_once()
    ordered = copies(rep, "dn-1") | copies(rep, "dn-2")
    assert ordered == {(bid(2), "dn-2"), (bid(1), "dn-3")}  # dn-3 only where no other will do
    rep.received("dn-2", [got(2)])
    assert rep.run_once().under_replicated == 1  # bid(1): its copy to dn-3 is under way
    assert health.copies_ordered == 2


def test_a_node_refusing_blocks_or_taking_them_again_starts_a_scan(ns, rep):
    live(ns.membership, "dn-1", "dn-2", "dn-3")
    put(ns, "/f", 2, {bid(1): ["dn-1", "dn-2"]})
    rep.run_once()
    ns.drop_replicas("dn-2", [bid(1)])  # behind the replicator's back: nothing says so
    refusing(ns.membership, "dn-3")
    assert rep.run_once().under_replicated == 1
    ns.drop_replicas("dn-1", [bid(1)])
    live(ns.membership, "dn-3")
    assert rep.run_once().missing == 1
