"""Two name nodes on one PostgreSQL, at READ COMMITTED (each statement sees what was committed
when it began): a commit made through a standby lands between two reads of one of the leader's
transactions, which must still never trash a replica of a block a file names; a leader that
lapsed and leads again asks for block reports; two admins removed at once leave one."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from pydfs import wire
from pydfs.errors import Conflict
from pydfs.namenode.blockmap import BlockMap
from pydfs.namenode.commits import Commits
from pydfs.namenode.leadership import Leadership
from pydfs.namenode.membership import Membership
from pydfs.namenode.namespace import Namespace
from pydfs.namenode.store import Store, open_store
from pydfs.namenode.store.interface import Tx, UploadRow
from pydfs.namenode.store.postgres import blockmap, tables

pytestmark = pytest.mark.asyncio

BS = 1 << 20
UPLOAD = "u" * 32


@pytest_asyncio.fixture
async def two(postgres_url: str) -> AsyncIterator[tuple[Store, Store]]:
    leader, standby = open_store(postgres_url), open_store(postgres_url)
    yield leader, standby
    await leader.aclose()
    await standby.aclose()


async def _setup(leader_store: Store, standby_store: Store, block: str):
    membership = Membership(standby_store, dead_after=60)
    await membership.load()
    ns = Namespace(standby_store, membership, replication=1, block_size=BS)
    await ns.open()
    lead = Leadership(leader_store, ttl=30)
    await lead.renew()
    assert lead.leads()
    bm = BlockMap(leader_store, Membership(leader_store, dead_after=60), None, lead)  # type: ignore[arg-type]
    async with standby_store.write() as tx:
        await tx.uploads.open(
            UploadRow(UPLOAD, "alice", f"/{block}", 1, BS, False, time.time(), time.time() + 600)
        )
        await tx.uploads.grant(UPLOAD, block, ["dn1"])

    async def commit() -> None:
        """What ``Uploads.commit`` does on the standby: close the lease, name the block."""

        async def close(tx: Tx) -> None:
            await tx.uploads.close(UPLOAD)

        await Commits(ns).commit_file(
            f"/{block}",
            None,
            replication=1,
            block_size=BS,
            blocks=[wire.StoredBlock(block, 10, 123, ["dn1"])],
            overwrite=False,
            before=close,
        )

    return bm, commit


async def _trash_and_file(store: Store, block: str) -> tuple[list[str], bool, list[str]]:
    async with store.read() as tx:
        trashed = await tx.blocks.trashed_on("dn1")
        known = block in await tx.blocks.known([block])
        holders = await tx.blocks.holders(block)
    return trashed, known, holders


async def test_heartbeat_news_racing_a_standby_commit(
    two: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """add_replicas: ``blocks.get`` finds no block (not committed yet); the standby commits
    at once, closing the grant: the replica must not be trashed."""
    leader_store, standby_store = two
    bm, commit = await _setup(leader_store, standby_store, "blk-hb")
    original = blockmap.BlockMap.get

    async def get(self: blockmap.BlockMap, block_id: str) -> object:
        found = await original(self, block_id)
        if not done:
            done.append(1)
            await commit()  # the standby's commit lands just after the leader's look
        return found

    done: list[int] = []

    monkeypatch.setattr(blockmap.BlockMap, "get", get)
    await bm.add_replicas("dn1", [wire.Received("blk-hb", 10, 123, "w")])
    trashed, known, holders = await _trash_and_file(leader_store, "blk-hb")
    assert known and holders == ["dn1"]  # a file names the block, its one replica counted
    assert "blk-hb" not in trashed, "the leader ordered the committed block's only replica deleted"


async def test_block_report_racing_a_standby_commit(
    two: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """reconcile: ``blocks.known`` finds the block unknown (not committed yet); the standby
    commits at once: the replica must not be trashed."""
    leader_store, standby_store = two
    bm, commit = await _setup(leader_store, standby_store, "blk-rep")
    original = blockmap.BlockMap.known

    async def known(self: blockmap.BlockMap, block_ids: object) -> set[str]:
        found = await original(self, block_ids)  # type: ignore[arg-type]
        if not done:
            done.append(1)
            await commit()  # the standby's commit lands just after the leader's look
        return found

    done: list[int] = []

    monkeypatch.setattr(blockmap.BlockMap, "known", known)
    await bm.reconcile("dn1", ["blk-rep"], time.time() - 5)
    trashed, known, holders = await _trash_and_file(leader_store, "blk-rep")
    assert known and holders == ["dn1"]
    assert "blk-rep" not in trashed, "the leader ordered the committed block's only replica deleted"


class Clock:
    def __init__(self) -> None:
        self.now = 1.0

    def __call__(self) -> float:
        return self.now


async def test_a_leader_that_lapsed_and_leads_again_asks_for_reports(
    two: tuple[Store, Store],
) -> None:
    """While ``leads()`` is false (renewals failed: the database was away for a failover), the
    heartbeats it answers drop their news, and the data node forgets it: taking the lead again,
    even at the same epoch, must ask for block reports."""
    store, _ = two
    clock = Clock()
    lead = Leadership(store, ttl=10, clock=clock)
    calls: list[int] = []
    lead.on_lead = lambda: calls.append(1)
    await lead.renew()
    assert lead.leads() and calls == [1]
    clock.now += 9  # renewals failed for 9 s (database away): past the margin
    assert not lead.leads()  # heartbeats answered now drop their news
    await lead.renew()  # the database is back; nobody else took the lease
    assert lead.leads()
    assert calls == [1, 1], "took the lead again without asking data nodes for their reports"


async def test_two_name_nodes_removing_the_two_admins_leave_none(
    two: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Removing an admin counts the admins left, then deletes: two name nodes removing two
    different admins at once must not both see two and both commit."""
    from pydfs.namenode.auth import Users

    one, other = two
    users_one, users_other = Users(one), Users(other)
    await users_one.add("alice", admin=True, groups=[])
    await users_one.add("bob", admin=True, groups=[])
    both_counted = asyncio.Barrier(2)
    original = tables.Users.all

    async def all_then_wait(self: tables.Users) -> list:
        rows = await original(self)
        with contextlib.suppress(TimeoutError):  # the other waits for the lock: go on alone
            await asyncio.wait_for(both_counted.wait(), 1.0)
        return rows

    monkeypatch.setattr(tables.Users, "all", all_then_wait)
    results = await asyncio.gather(
        users_one.remove("alice"), users_other.remove("bob"), return_exceptions=True
    )
    monkeypatch.setattr(tables.Users, "all", original)
    async with one.read() as tx:
        admins = [u.name for u in await tx.users.all() if u.admin]
    assert admins, f"no admin left (removals: {results})"
    assert sum(isinstance(r, Conflict) for r in results) == 1, results
