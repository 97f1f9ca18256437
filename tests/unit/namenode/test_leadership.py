"""The lease on background work, on each backend: one holder at a time, a new epoch at every
change, and a deposed leader's guarded changes refused even while it still believes it leads."""

from __future__ import annotations

import asyncio

import pytest

from pydfs.namenode.leadership import Leadership, NotLeader
from pydfs.namenode.store import Store

pytestmark = pytest.mark.asyncio


async def test_one_holder_at_a_time_and_a_new_epoch_at_each_change(any_store: Store) -> None:
    async with any_store.write() as tx:
        first = await tx.leader.claim("a", "http://a", 0.3)
        assert (first.holder, first.url, first.epoch) == ("a", "http://a", 1)
        assert 0 < first.left <= 0.3
        taken = await tx.leader.claim("b", "http://b", 0.3)  # a's lease runs: b gets nothing
        assert (taken.holder, taken.epoch) == ("a", 1)
        again = await tx.leader.claim("a", "http://a", 0.3)  # a extends: the same epoch
        assert (again.holder, again.epoch) == ("a", 1)
        assert await tx.leader.holds("a", 1) and not await tx.leader.holds("b", 1)
    await asyncio.sleep(0.4)
    async with any_store.write() as tx:
        assert not await tx.leader.holds("a", 1)  # lapsed
        moved = await tx.leader.claim("b", "http://b", 5)
        assert (moved.holder, moved.url, moved.epoch) == ("b", "http://b", 2)
        assert await tx.leader.holds("b", 2) and not await tx.leader.holds("a", 1)
        await tx.leader.resign("a")  # not a's to give up
        assert await tx.leader.holds("b", 2)
        await tx.leader.resign("b")
        assert not await tx.leader.holds("b", 2)
        back = await tx.leader.claim("a", "http://a", 5)
        assert (back.holder, back.epoch) == ("a", 3)


async def test_nudges_count_up(any_store: Store) -> None:
    async with any_store.write() as tx:
        before = (await tx.leader.current()).nudges
        await tx.leader.nudge()
        await tx.leader.nudge()
        assert (await tx.leader.current()).nudges == before + 2


class Clock:
    def __init__(self) -> None:
        self.now = 1.0

    def __call__(self) -> float:
        return self.now


async def test_a_deposed_leader_that_still_believes_it_leads_cannot_change_anything(
    any_store: Store,
) -> None:
    """As a leader stopped (SIGSTOP, a long pause) past its lease finds on waking: its own clock
    says it still leads, but its guarded write is refused and rolled back."""
    frozen = Clock()  # a's clock stands still, as a stopped process's view of time does
    a = Leadership(any_store, ttl=0.3, clock=frozen)
    b = Leadership(any_store, ttl=5)
    await a.renew()
    assert a.leads() and a.epoch == 1 and a.took_lead == 1
    await b.renew()
    assert not b.leads() and b.lease is not None and b.lease.holder == a.holder
    await asyncio.sleep(0.4)  # a's lease lapses by the store's clock
    await b.renew()
    assert b.leads() and b.epoch == 2
    assert a.leads()  # a has not looked since
    with pytest.raises(NotLeader):
        async with a.write() as tx:
            await tx.datanodes.put("dn-from-a", "http://stale")
    assert a.refused == 1 and not a.leads()
    async with any_store.read() as tx:
        assert "dn-from-a" not in {row.id for row in await tx.datanodes.all()}
    async with b.write() as tx:
        await tx.datanodes.put("dn-from-b", "http://fresh")
    await a.renew()
    assert not a.leads() and a.lease is not None and a.lease.holder == b.holder


async def test_a_leader_past_its_own_margin_stops_acting_before_the_store_says_so(
    any_store: Store,
) -> None:
    clock = Clock()
    a = Leadership(any_store, ttl=10, clock=clock)
    await a.renew()
    assert a.leads()
    clock.now += 10 * 0.81  # past the share of the lease it trusts, unrenewed
    assert not a.leads()
    with pytest.raises(NotLeader):
        async with a.write():
            pass


async def test_a_nudge_from_a_standby_reaches_the_leader(any_store: Store) -> None:
    leader = Leadership(any_store, ttl=5)
    standby = Leadership(any_store, ttl=5)
    await leader.renew()
    await standby.renew()
    assert not leader.nudged()
    standby.nudge()
    await standby.renew()
    await leader.renew()
    assert leader.nudged() and not leader.nudged()


async def test_a_guarded_write_keeps_the_lease_from_changing_hands_until_it_ends(
    any_store: Store,
) -> None:
    """On PostgreSQL, name nodes run at once: a claim waits for a leader's write under way (on
    SQLite, transactions take turns anyway)."""
    a = Leadership(any_store, ttl=0.3)
    b = Leadership(any_store, ttl=5)
    await a.renew()
    order: list[str] = []

    async def claim_when_lapsed() -> None:
        await asyncio.sleep(0.4)  # a's lease has lapsed: only its open write keeps it
        await b.renew()
        order.append(f"claimed:{b.epoch}")

    async with a.write() as tx:
        claimer = asyncio.create_task(claim_when_lapsed())
        await asyncio.sleep(0.6)  # the lease lapses while this transaction holds it
        await tx.datanodes.put("dn-a", "http://a")
        order.append("a committed")
    await claimer
    assert order == ["a committed", "claimed:2"]
