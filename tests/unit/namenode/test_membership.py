"""The data node registry: heartbeats, liveness, restarts, admin state and space."""

import time

import pytest
from tests.unit.namenode.parts import Blocking

from pydfs import wire
from pydfs.errors import NotFound
from pydfs.namenode.membership import Membership
from pydfs.namenode.placement import Candidate

MiB = 1024 * 1024


def hb(node_id, incarnation="inc-1", *, url=None, capacity=1000, used=0, free=1000, blocks=0):
    return wire.Heartbeat(
        node_id, url or f"http://{node_id}.test", incarnation, capacity, used, free, blocks
    )


def kill(membership, node_id):
    membership.nodes[node_id].last_heartbeat = time.monotonic() - 1000


@pytest.fixture
def open_membership(open_store, loop):
    """Open (or reopen) a registry kept in one SQLite file, as a restarted name node would."""

    def open_(**kwargs) -> Membership:
        members = Membership(open_store(), dead_after=30, **kwargs)
        loop.run_until_complete(members.load())
        return Blocking(members, loop)

    return open_


@pytest.fixture
def members(open_membership):
    return open_membership()


def ids(nodes):
    return sorted(n.id for n in nodes)


# --- heartbeats and reports -----------------------------------------------------------------


def test_a_new_node_is_asked_for_a_report(members):
    node, restarted = members.heartbeat(hb("dn-1", capacity=900, used=100, free=800, blocks=3))
    assert restarted is True
    assert node.wants_report is True
    assert (node.id, node.url, node.incarnation) == ("dn-1", "http://dn-1.test", "inc-1")
    assert (node.capacity, node.used, node.free, node.blocks) == (900, 100, 800, 3)
    assert node.admin_state == "normal"
    assert members.is_live("dn-1")
    assert members.nodes["dn-1"] is node


def test_the_same_incarnation_again_is_not_a_restart(members):
    node, _ = members.heartbeat(hb("dn-1"))
    node.wants_report = False  # its block report arrived
    again, restarted = members.heartbeat(hb("dn-1", used=5, free=995))
    assert again is node
    assert restarted is False
    assert node.wants_report is False
    assert (node.used, node.free) == (5, 995)


def test_a_new_incarnation_is_a_restart_and_wants_a_report(members):
    node, _ = members.heartbeat(hb("dn-1"))
    node.wants_report = False
    _, restarted = members.heartbeat(hb("dn-1", "inc-2"))
    assert restarted is True
    assert node.wants_report is True
    assert node.incarnation == "inc-2"


def test_a_node_back_from_the_dead_wants_a_report(members):
    node, _ = members.heartbeat(hb("dn-1"))
    node.wants_report = False
    kill(members, "dn-1")
    assert not members.is_live("dn-1")
    _, restarted = members.heartbeat(hb("dn-1"))
    assert restarted is False  # same process, it was only unreachable
    assert node.wants_report is True
    assert members.is_live("dn-1")


def test_request_reports_asks_every_node(members):
    for node_id in ("dn-1", "dn-2"):
        node, _ = members.heartbeat(hb(node_id))
        node.wants_report = False
    members.request_reports()
    assert all(n.wants_report for n in members.nodes.values())


# --- liveness -------------------------------------------------------------------------------


def test_liveness_follows_the_deadline(members):
    assert not members.is_live("dn-unknown")
    members.heartbeat(hb("dn-1"))
    members.heartbeat(hb("dn-2"))
    members.nodes["dn-2"].last_heartbeat = time.monotonic() - 29
    assert ids(members.live()) == ["dn-1", "dn-2"]
    members.nodes["dn-2"].last_heartbeat = time.monotonic() - 31
    assert ids(members.live()) == ["dn-1"]
    assert {s.id: s.state for s in members.states()} == {"dn-1": "live", "dn-2": "dead"}


def test_liveness_is_measured_on_the_injected_clock_from_zero(open_membership):
    """A clock that starts at 0 (a fresh boot's, a test's): a heartbeat at 0 counts, and only
    the registry's own clock decides when a node is dead."""
    now = [0.0]
    members = open_membership(clock=lambda: now[0])
    members.heartbeat(hb("dn-1"))
    assert ids(members.live()) == ["dn-1"]
    now[0] = 30.0
    assert ids(members.live()) == ["dn-1"]
    now[0] = 30.5
    assert members.live() == []
    members.heartbeat(hb("dn-1"))
    assert members.is_live("dn-1")


def test_ref_names_a_node_and_its_liveness(members):
    members.heartbeat(hb("dn-1"))
    assert members.ref("dn-1") == wire.NodeRef("dn-1", "http://dn-1.test", True)
    kill(members, "dn-1")
    assert members.ref("dn-1") == wire.NodeRef("dn-1", "http://dn-1.test", False)
    assert members.ref("dn-9") == wire.NodeRef("dn-9", "", False)


# --- what is persisted ----------------------------------------------------------------------


def test_nodes_and_url_changes_survive_a_reopen(open_membership):
    members = open_membership()
    members.heartbeat(hb("dn-1", url="http://old.test"))
    members.heartbeat(hb("dn-1", url="http://new.test"))
    members.heartbeat(hb("dn-2"))
    assert members.nodes["dn-1"].url == "http://new.test"

    again = open_membership()
    assert sorted(again.nodes) == ["dn-1", "dn-2"]
    assert again.nodes["dn-1"].url == "http://new.test"
    assert again.live() == []  # liveness is soft state: known again at the next heartbeat
    assert again.ref("dn-1") == wire.NodeRef("dn-1", "http://new.test", False)
    node, restarted = again.heartbeat(hb("dn-1", url="http://new.test"))
    assert restarted is True and node.wants_report is True


def test_admin_state_survives_a_reopen(open_membership):
    members = open_membership()
    members.heartbeat(hb("dn-1"))
    members.heartbeat(hb("dn-2"))
    node = members.set_admin_state("dn-1", "decommissioning")
    assert node.admin_state == "decommissioning"
    assert open_membership().nodes["dn-1"].admin_state == "decommissioning"
    members.set_admin_state("dn-1", "decommissioned")
    again = open_membership()
    assert again.nodes["dn-1"].admin_state == "decommissioned"
    assert again.nodes["dn-2"].admin_state == "normal"
    # A heartbeat (even with a new URL) does not undo an admin state.
    again.heartbeat(hb("dn-1", "inc-2", url="http://moved.test"))
    assert open_membership().nodes["dn-1"].admin_state == "decommissioned"


def test_set_admin_state_of_an_unknown_node(members):
    with pytest.raises(NotFound):
        members.set_admin_state("dn-9", "decommissioning")
    assert "dn-9" not in members.nodes


# --- serving and placement ------------------------------------------------------------------


def test_serving_excludes_draining_drained_and_dead_nodes(members):
    for node_id in ("dn-1", "dn-2", "dn-3", "dn-4"):
        members.heartbeat(hb(node_id))
    members.set_admin_state("dn-2", "decommissioning")
    members.set_admin_state("dn-3", "decommissioned")
    kill(members, "dn-4")
    assert ids(members.live()) == ["dn-1", "dn-2", "dn-3"]
    assert ids(members.serving()) == ["dn-1"]
    members.set_admin_state("dn-2", "normal")
    assert ids(members.serving()) == ["dn-1", "dn-2"]


def test_candidates_are_the_serving_nodes_with_their_free_space(members):
    members.heartbeat(hb("dn-1", free=100))
    members.heartbeat(hb("dn-2", free=200))
    members.heartbeat(hb("dn-3", free=300))
    members.heartbeat(hb("dn-4", free=400))
    members.set_admin_state("dn-2", "decommissioning")
    kill(members, "dn-3")
    assert sorted(members.candidates(), key=lambda c: c.id) == [
        Candidate("dn-1", 100),
        Candidate("dn-4", 400),
    ]


# --- space ----------------------------------------------------------------------------------


def test_space_counts_serving_nodes_and_dead_ones(members):
    members.heartbeat(hb("dn-1", capacity=1000, used=100, free=900))
    members.heartbeat(hb("dn-2", capacity=2000, used=300, free=1500))
    members.heartbeat(hb("dn-3", capacity=5000, used=0, free=5000))
    kill(members, "dn-3")
    space = members.space(2)
    assert space == wire.Space(
        raw_capacity=3000,
        raw_free=2400,
        used=400,
        usable=1200,
        replication=2,
        live_nodes=2,
        dead_nodes=1,
    )
    # More replicas than nodes: each byte can be stored only as often as there are nodes.
    assert members.space(3).usable == 1200
    assert members.space(1).usable == 2400


def test_space_of_a_registry_loaded_from_disk_counts_every_node_dead(open_membership):
    members = open_membership()
    members.heartbeat(hb("dn-1"))
    members.heartbeat(hb("dn-2"))
    space = open_membership().space(2)
    assert (space.live_nodes, space.dead_nodes, space.raw_free, space.usable) == (0, 2, 0, 0)


def test_space_leaves_draining_nodes_out_of_the_room_left(members):
    members.heartbeat(hb("dn-1", capacity=1000, free=1000))
    members.heartbeat(hb("dn-2", capacity=1000, free=1000))
    members.set_admin_state("dn-2", "decommissioning")
    space = members.space(1)
    assert (space.raw_capacity, space.raw_free, space.live_nodes) == (1000, 1000, 1)
    assert space.dead_nodes == 0  # draining, but not dead


def test_states_report_every_node_sorted(members):
    members.heartbeat(hb("dn-b", capacity=10, used=1, free=9, blocks=2))
    members.heartbeat(hb("dn-a"))
    members.set_admin_state("dn-a", "decommissioning")
    before = time.time()
    members.heartbeat(hb("dn-b", capacity=10, used=1, free=9, blocks=2))
    states = members.states()
    assert [s.id for s in states] == ["dn-a", "dn-b"]
    a, b = states
    assert (a.state, a.admin_state) == ("live", "decommissioning")
    assert (b.url, b.capacity, b.used, b.free, b.blocks) == ("http://dn-b.test", 10, 1, 9, 2)
    assert b.last_heartbeat >= before


def test_a_node_whose_disk_refused_a_block_is_a_last_resort_while_it_says_so(members):
    members.heartbeat(hb("dn-1"))
    members.heartbeat(hb("dn-2"))
    failing = hb("dn-2")
    failing.write_failure = "x" * 10_000  # kept short
    members.heartbeat(failing)
    assert len(members.nodes["dn-2"].write_failure) == 200
    failing.write_failure = "Input/output error"
    members.heartbeat(failing)
    refusing = {c.id: c.refusing for c in members.candidates()}
    assert refusing == {"dn-1": False, "dn-2": True}  # placed last, when needed (placement)
    assert ids(members.serving()) == ["dn-1", "dn-2"]  # it serves reads all the same
    (state,) = [s for s in members.states() if s.id == "dn-2"]
    assert state.write_failure == "Input/output error"
    members.heartbeat(hb("dn-2"))
    assert not any(c.refusing for c in members.candidates())
    kill(members, "dn-1")
    members.heartbeat(failing)
    kill(members, "dn-2")
    assert [s.write_failure for s in members.states()] == ["", ""]  # dead: nothing to tell
