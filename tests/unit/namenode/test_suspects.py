"""Reports of bad replicas: deduplicated, rate-limited, bounded, and only for replicas held."""

import pytest
from tests.unit.namenode.parts import Blocking, parts_loop, unwrap

from pydfs import wire
from pydfs.namenode import suspects as module
from pydfs.namenode.auth import User
from pydfs.namenode.suspects import Suspects

OWNER = User("alice", admin=True)


def bid(n: int) -> str:
    return f"{n:032x}"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def hold(ns, node, blocks):
    """A committed file whose blocks are all on *node*."""
    ns.commit_file(
        f"/f{blocks[0]}",
        OWNER,
        replication=1,
        block_size=4096,
        blocks=[wire.StoredBlock(b, 100, 1234, [node]) for b in blocks],
        overwrite=False,
    )


@pytest.fixture
def suspects(ns, clock):
    return Blocking(Suspects(unwrap(ns).blockmap, clock=clock), parts_loop(ns))


def test_a_replica_reported_a_hundred_times_is_verified_once(ns, suspects, clock):
    hold(ns, "dn-1", [bid(1)])
    accepted = [suspects.report("mallory", "dn-1", bid(1)) for _ in range(100)]
    assert accepted.count(True) == 1
    assert suspects.orders_for("dn-1") == [bid(1)]
    clock.now += module.AGAIN_AFTER / 2  # verified a moment ago: not again
    assert not any(suspects.report("mallory", "dn-1", bid(1)) for _ in range(100))
    assert suspects.orders_for("dn-1") == []
    clock.now += module.AGAIN_AFTER  # long enough ago: a new report is news
    assert suspects.report("mallory", "dn-1", bid(1))
    assert suspects.orders_for("dn-1") == [bid(1)]


def test_a_new_replica_or_a_bad_verdict_makes_a_report_news_again(ns, suspects):
    hold(ns, "dn-1", [bid(1)])
    assert suspects.report("bob", "dn-1", bid(1))
    assert suspects.orders_for("dn-1") == [bid(1)]
    assert not suspects.report("bob", "dn-1", bid(1))
    suspects.changed("dn-1", [bid(1)])  # e.g. quarantined, then copied there again
    assert suspects.report("bob", "dn-1", bid(1))


def test_only_replicas_the_node_holds_count(ns, suspects):
    hold(ns, "dn-1", [bid(1)])
    hold(ns, "dn-2", [bid(2)])
    assert not suspects.report("bob", "dn-1", bid(2))  # held by another node
    assert not suspects.report("bob", "dn-1", bid(3))  # no such block
    assert not suspects.report("bob", "dn-9", bid(1))  # no such node
    assert suspects.orders_for("dn-1") == suspects.orders_for("dn-9") == []


def test_each_user_reports_only_so_fast(ns, suspects, clock):
    blocks = [bid(n) for n in range(1, 200)]
    hold(ns, "dn-1", blocks)
    burst = int(module.USER_BURST)
    accepted = [suspects.report("mallory", "dn-1", b) for b in blocks[:100]]
    assert accepted == [True] * burst + [False] * (100 - burst)
    assert suspects.report("bob", "dn-1", blocks[100])  # another user is not held back
    clock.now += 1.0  # one second later: USER_RATE more
    more = [suspects.report("mallory", "dn-1", b) for b in blocks[101:120]]
    assert more.count(True) == int(module.USER_RATE)


def test_all_users_together_report_only_so_fast(ns, suspects):
    blocks = [bid(n) for n in range(1, 1000)]
    hold(ns, "dn-1", blocks)
    users = [f"user{i}" for i in range(100)]
    accepted = sum(suspects.report(users[i % 100], "dn-1", b) for i, b in enumerate(blocks))
    assert accepted == module.ALL_BURST
    assert len(unwrap(suspects)) == accepted


def test_the_queue_is_bounded_and_drains_a_heartbeat_at_a_time(ns, suspects, clock, monkeypatch):
    monkeypatch.setattr(module, "MAX_PENDING", 100)
    blocks = [bid(n) for n in range(1, 400)]
    hold(ns, "dn-1", blocks)
    for i, block in enumerate(blocks):
        clock.now += 1.0  # slow enough for every rate limit
        suspects.report(f"user{i}", "dn-1", block)
    assert len(unwrap(suspects)) == 100
    orders = suspects.orders_for("dn-1")
    assert orders == blocks[: module.PER_HEARTBEAT]
    assert len(unwrap(suspects)) == 100 - module.PER_HEARTBEAT
    assert suspects.orders_for("dn-1") == blocks[module.PER_HEARTBEAT : 100]
    assert suspects.orders_for("dn-1") == []
