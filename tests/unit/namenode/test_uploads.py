import re

import msgspec
import pytest
from tests.unit.namenode.parts import Blocking, in_flight, parts_loop, unwrap

from pydfs import wire
from pydfs.errors import (
    AlreadyExists,
    Conflict,
    InsufficientNodes,
    InvalidArgument,
    IsADirectory,
    LimitExceeded,
    NoSpace,
    NotFound,
    PermissionDenied,
    ProtocolError,
    Unavailable,
)
from pydfs.namenode.auth import User
from pydfs.namenode.membership import Membership
from pydfs.namenode.uploads import (
    MAX_BATCH,
    MAX_BLOCK_SIZE,
    MAX_REPLICATION,
    MIN_BLOCK_SIZE,
    Uploads,
)

MiB = 1024 * 1024

ALICE = User("alice", admin=True)


def live(ns, *node_ids, free=100 * MiB):
    for node_id in node_ids:
        ns.membership.heartbeat(
            wire.Heartbeat(node_id, f"http://{node_id}.test", "inc-1", free, 0, free, 0)
        )


def trash(ns):
    return set(ns.db.execute("SELECT node, block FROM trash"))


def pairs(grant):
    return {(n.id, grant.block_id) for n in grant.targets}


def stored(grant, size=100, nodes=None):
    ids = [n.id for n in grant.targets] if nodes is None else nodes
    return wire.StoredBlock(grant.block_id, size, 1234, ids)


class Clock:
    """A monotonic clock the test moves; it starts near 0, as a freshly booted machine's."""

    def __init__(self) -> None:
        self.now = 1.0

    def __call__(self) -> float:
        return self.now


def make_uploads(ns, membership, **kwargs):
    loop = parts_loop(ns)
    return Blocking(Uploads(unwrap(ns).commits, unwrap(membership), **kwargs), loop)


def restart_membership(ns, **kwargs):
    """The registry as a restarted name node loads it from the store."""
    members = Membership(ns.store, **kwargs)
    parts_loop(ns).run_until_complete(members.load())
    return Blocking(members, parts_loop(ns))


@pytest.fixture
def clock(ns):
    clock = Clock()
    ns.membership.clock = clock
    return clock


@pytest.fixture
def uploads(ns):
    live(ns, "dn-1", "dn-2", "dn-3")
    return make_uploads(ns, ns.membership, lease=600)


def test_start_grants_a_first_block(uploads):
    grant = uploads.start(wire.UploadRequest("/d/../f", replication=2, block_size=MiB), ALICE)
    assert (grant.path, grant.replication, grant.block_size) == ("/f", 2, MiB)
    assert len(grant.block.block_id) == 32
    targets = [n.id for n in grant.block.targets]
    assert len(set(targets)) == 2
    assert set(targets) <= {"dn-1", "dn-2", "dn-3"}
    assert all(n.live and n.url == f"http://{n.id}.test" for n in grant.block.targets)
    assert in_flight(uploads) == {grant.block.block_id}


def test_block_and_upload_ids_grow_with_time_behind_two_random_digits(uploads):
    """The store keeps them in indexes that outgrow its cache: an id that grows goes in at one
    of 256 ends, a random one anywhere. Data nodes spread block files by the first two digits,
    which stay random."""
    grants = [uploads.start(wire.UploadRequest(f"/f{i}"), ALICE) for i in range(40)]
    for ids in ([g.upload_id for g in grants], [g.block.block_id for g in grants]):
        assert all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)
        assert [i[2:] for i in ids] == sorted(i[2:] for i in ids)
        assert len({i[:2] for i in ids}) > 10


def test_start_uses_namespace_defaults(uploads, ns):
    grant = uploads.start(wire.UploadRequest("/f"), ALICE)
    assert (grant.replication, grant.block_size) == (ns.replication, ns.block_size)


@pytest.mark.parametrize("replication", [0, -1, MAX_REPLICATION + 1])
def test_start_validates_replication(uploads, replication):
    with pytest.raises(InvalidArgument):
        uploads.start(wire.UploadRequest("/f", replication=replication), ALICE)
    assert in_flight(uploads) == set()


@pytest.mark.parametrize("block_size", [0, MIN_BLOCK_SIZE - 1, MAX_BLOCK_SIZE + 1])
def test_start_validates_block_size(uploads, block_size):
    with pytest.raises(InvalidArgument):
        uploads.start(wire.UploadRequest("/f", block_size=block_size), ALICE)


def test_start_accepts_the_range_limits(uploads):
    uploads.start(wire.UploadRequest("/a", replication=1, block_size=MIN_BLOCK_SIZE), ALICE)
    uploads.start(
        wire.UploadRequest("/b", replication=MAX_REPLICATION, block_size=MIN_BLOCK_SIZE), ALICE
    )


def test_start_refuses_directories_and_existing_files(uploads, ns):
    ns.mkdir("/d", ALICE)
    ns.create_file("/f", ALICE)
    with pytest.raises(IsADirectory):
        uploads.start(wire.UploadRequest("/d"), ALICE)
    with pytest.raises(IsADirectory):
        uploads.start(wire.UploadRequest("/"), ALICE)
    with pytest.raises(AlreadyExists):
        uploads.start(wire.UploadRequest("/f", overwrite=False), ALICE)
    with pytest.raises(NotFound):
        uploads.start(wire.UploadRequest("/missing/f"), ALICE)
    assert in_flight(uploads) == set()
    uploads.start(wire.UploadRequest("/f", overwrite=True), ALICE)


def test_start_without_live_nodes(ns):
    uploads = make_uploads(ns, ns.membership, lease=600)
    with pytest.raises(InsufficientNodes):
        uploads.start(wire.UploadRequest("/f"), ALICE)
    assert in_flight(uploads) == set()


def test_start_when_live_nodes_are_full(ns):
    uploads = make_uploads(ns, ns.membership, lease=600)
    live(ns, "dn-1", free=MiB)  # alive, but no room for a 2 MiB block
    with pytest.raises(NoSpace):
        uploads.start(wire.UploadRequest("/f", block_size=2 * MiB), ALICE)
    assert uploads.start(wire.UploadRequest("/f", block_size=MiB), ALICE).block.targets


def test_allocate_excludes_nodes(uploads):
    grant = uploads.start(wire.UploadRequest("/f", replication=1), ALICE)
    block = uploads.allocate(
        grant.upload_id, wire.BlockAllocRequest(exclude=["dn-1", "dn-2"]), ALICE
    )
    assert [n.id for n in block.targets] == ["dn-3"]
    with pytest.raises(InsufficientNodes):
        uploads.allocate(grant.upload_id, wire.BlockAllocRequest(["dn-1", "dn-2", "dn-3"]), ALICE)


def test_commit_makes_the_file_and_trashes_unused_blocks(uploads, ns):
    grant = uploads.start(wire.UploadRequest("/f", replication=2, block_size=MiB), ALICE)
    second = uploads.allocate(grant.upload_id, wire.BlockAllocRequest(), ALICE)
    unused = uploads.allocate(grant.upload_id, wire.BlockAllocRequest(), ALICE)
    status = uploads.commit(
        grant.upload_id, wire.CommitRequest([stored(grant.block, 100), stored(second, 5)]), ALICE
    )
    assert (status.path, status.owner, status.size) == ("/f", "alice", 105)
    assert [b.id for b in status.blocks] == [grant.block.block_id, second.block_id]
    assert trash(ns) == pairs(unused)
    assert in_flight(uploads) == set()
    with pytest.raises(Conflict):
        uploads.commit(grant.upload_id, wire.CommitRequest([]), ALICE)


def test_commit_refuses_foreign_blocks(uploads):
    mine = uploads.start(wire.UploadRequest("/a"), ALICE)
    other = uploads.start(wire.UploadRequest("/b"), ALICE)
    for blocks in (
        [stored(other.block)],
        [wire.StoredBlock("ff" * 16, 1, 0, ["dn-1"])],
        [stored(mine.block), stored(mine.block)],  # the same block twice
    ):
        with pytest.raises(ProtocolError):
            uploads.commit(mine.upload_id, wire.CommitRequest(blocks), ALICE)
    assert in_flight(uploads) == {mine.block.block_id, other.block.block_id}


def test_commit_refuses_nodes_a_block_was_not_sent_to(uploads, ns):
    grant = uploads.start(wire.UploadRequest("/f", replication=1), ALICE)
    (target,) = [n.id for n in grant.block.targets]
    stranger = next(n for n in ("dn-1", "dn-2", "dn-3") if n != target)
    for nodes in ([stranger], [target, stranger], []):
        with pytest.raises(ProtocolError):
            uploads.commit(
                grant.upload_id, wire.CommitRequest([stored(grant.block, nodes=nodes)]), ALICE
            )
    with pytest.raises(NotFound):
        ns.stat("/f")


def test_commit_refuses_impossible_sizes(uploads):
    grant = uploads.start(wire.UploadRequest("/f", block_size=MIN_BLOCK_SIZE), ALICE)
    for size in (-1, MIN_BLOCK_SIZE + 1):
        with pytest.raises(ProtocolError):
            uploads.commit(grant.upload_id, wire.CommitRequest([stored(grant.block, size)]), ALICE)


def test_abort_trashes_every_target(uploads, ns):
    grant = uploads.start(wire.UploadRequest("/f", replication=3), ALICE)
    second = uploads.allocate(grant.upload_id, wire.BlockAllocRequest(), ALICE)
    uploads.abort(grant.upload_id, ALICE)
    assert trash(ns) == pairs(grant.block) | pairs(second)
    assert len(trash(ns)) == 6
    assert in_flight(uploads) == set()
    uploads.abort(grant.upload_id, ALICE)  # aborting twice is harmless
    with pytest.raises(Conflict):
        uploads.allocate(grant.upload_id, wire.BlockAllocRequest(), ALICE)


def test_expire_drops_only_stale_uploads(ns):
    live(ns, "dn-1", "dn-2")
    stale = make_uploads(ns, ns.membership, lease=-1.0)  # every lease is already over
    fresh = make_uploads(ns, ns.membership, lease=600)
    old = stale.start(wire.UploadRequest("/a"), ALICE)
    new = fresh.start(wire.UploadRequest("/b"), ALICE)
    assert fresh.expire() == 1  # the stale one (leases are in the store: any sweep finds it)
    assert stale.expire() == 0
    assert trash(ns) == pairs(old.block)
    assert in_flight(fresh) == {new.block.block_id}
    with pytest.raises(Conflict):
        stale.commit(old.upload_id, wire.CommitRequest([stored(old.block)]), ALICE)


def test_renew_keeps_a_slow_upload_alive(ns, clock):
    """On one injected clock, which starts where a freshly booted machine's would: data nodes
    stay live as they heartbeat, leases run out only when not renewed."""
    uploads = make_uploads(ns, ns.membership, lease=600, clock=clock)
    live(ns, "dn-1", "dn-2", "dn-3")
    slow = uploads.start(wire.UploadRequest("/slow"), ALICE)
    idle = uploads.start(wire.UploadRequest("/idle"), ALICE)
    expired = []
    for _ in range(3):  # 3 times 500 s: longer than the 600 s lease, renewed all along
        clock.now += 500
        live(ns, "dn-1", "dn-2", "dn-3")
        uploads.renew(slow.upload_id, ALICE)
        uploads.allocate(slow.upload_id, wire.BlockAllocRequest(), ALICE)
        expired.append(uploads.expire())
    assert expired == [0, 1, 0]  # the idle one went once its lease ran out
    assert uploads.count() == 1
    uploads.commit(slow.upload_id, wire.CommitRequest([stored(slow.block)]), ALICE)
    with pytest.raises(Conflict):
        uploads.renew(idle.upload_id, ALICE)


def test_a_lease_that_ran_out_is_gone_before_the_sweep(ns, clock):
    uploads = make_uploads(ns, ns.membership, lease=600, clock=clock)
    live(ns, "dn-1", "dn-2")
    grant = uploads.start(wire.UploadRequest("/f"), ALICE)
    clock.now += 601
    with pytest.raises(Conflict, match="expired"):
        uploads.commit(grant.upload_id, wire.CommitRequest([stored(grant.block)]), ALICE)
    assert trash(ns) == pairs(grant.block)
    assert uploads.count() == 0


def test_renewals_do_not_extend_an_upload_past_its_lifetime(ns, clock):
    uploads = make_uploads(ns, ns.membership, lease=600, lifetime=1000, clock=clock)
    live(ns, "dn-1", "dn-2")
    grant = uploads.start(wire.UploadRequest("/f"), ALICE)
    clock.now += 500
    uploads.renew(grant.upload_id, ALICE)
    clock.now += 400  # 900 s old: renewed, but only up to its lifetime
    uploads.renew(grant.upload_id, ALICE)
    assert uploads.listing().uploads[0].expires_in == pytest.approx(100)
    assert uploads.expire() == 0
    clock.now += 101
    assert uploads.expire() == 1  # though renewed 101 s ago
    with pytest.raises(Conflict):
        uploads.renew(grant.upload_id, ALICE)
    assert trash(ns) == pairs(grant.block)


def test_a_renewed_upload_past_its_lifetime_says_so(ns, clock):
    uploads = make_uploads(ns, ns.membership, lease=600, lifetime=1000, clock=clock)
    live(ns, "dn-1", "dn-2")
    grant = uploads.start(wire.UploadRequest("/f"), ALICE)
    for _ in range(2):
        clock.now += 500
        uploads.renew(grant.upload_id, ALICE)
    clock.now += 1
    with pytest.raises(Conflict, match="1000 s at most"):
        uploads.renew(grant.upload_id, ALICE)


def test_each_user_may_hold_only_so_many_open_uploads(ns):
    uploads = make_uploads(ns, ns.membership, lease=600, max_open=3)
    live(ns, "dn-1", "dn-2")
    bob = User("bob", admin=True)
    grants = [uploads.start(wire.UploadRequest(f"/f{i}"), ALICE) for i in range(3)]
    with pytest.raises(LimitExceeded, match="alice has 3 uploads open"):
        uploads.start(wire.UploadRequest("/f3"), ALICE)
    with pytest.raises(LimitExceeded):
        uploads.start_batch(wire.UploadBatchRequest(1), ALICE)
    assert uploads.count() == 3  # nothing of the refused ones stays
    uploads.start(wire.UploadRequest("/b"), bob)  # another user is not held back
    uploads.abort(grants[0].upload_id, ALICE)
    uploads.commit(grants[1].upload_id, wire.CommitRequest([stored(grants[1].block)]), ALICE)
    # A batch takes at most half the room left (so that other clients of alice find some),
    # but at least one lease while there is room.
    assert len(uploads.start_batch(wire.UploadBatchRequest(5), ALICE).uploads) == 1
    assert len(uploads.start_batch(wire.UploadBatchRequest(5), ALICE).uploads) == 1
    with pytest.raises(LimitExceeded):
        uploads.start(wire.UploadRequest("/f4"), ALICE)


def test_expired_uploads_count_no_more(ns, clock):
    uploads = make_uploads(ns, ns.membership, lease=600, max_open=2, clock=clock)
    live(ns, "dn-1", "dn-2")
    for i in range(2):
        uploads.start(wire.UploadRequest(f"/f{i}"), ALICE)
    clock.now += 601
    assert uploads.expire() == 2
    live(ns, "dn-1", "dn-2")
    assert len(uploads.start_batch(wire.UploadBatchRequest(64), ALICE).uploads) == 1
    assert len(uploads.start(wire.UploadRequest("/f3"), ALICE).upload_id) == 32


def test_batches_of_the_sdk_fit_under_the_default_limit(ns):
    """A client keeps at most one batch of leases ahead (transfer.MAX_BATCH): a writer of many
    small files, one after the other, never meets the limit."""
    from pydfs.client import transfer

    uploads = make_uploads(ns, ns.membership, lease=600)
    live(ns, "dn-1", "dn-2")
    assert transfer.MAX_BATCH <= MAX_BATCH < uploads.max_open
    shelf: list[wire.UploadGrant] = []
    size = 1
    for i in range(300):
        if not shelf:
            shelf = uploads.start_batch(wire.UploadBatchRequest(size), ALICE).uploads
            size = min(transfer.MAX_BATCH, size * 2)
        grant = shelf.pop()
        commit = wire.CommitRequest([stored(grant.block)], path=f"/f{i}")
        uploads.commit(grant.upload_id, commit, ALICE)
    assert uploads.count() == len(shelf) < transfer.MAX_BATCH


def test_admins_see_every_open_upload(ns, clock):
    uploads = make_uploads(ns, ns.membership, lease=600, clock=clock)
    live(ns, "dn-1", "dn-2")
    named = uploads.start(wire.UploadRequest("/big", replication=2, block_size=MiB), ALICE)
    uploads.allocate(named.upload_id, wire.BlockAllocRequest(), ALICE)
    clock.now += 10
    batch = uploads.start_batch(wire.UploadBatchRequest(1, block_size=2 * MiB), User("bob"))
    clock.now += 5
    first, second = uploads.listing().uploads
    assert (first.id, first.user, first.path) == (named.upload_id, "alice", "/big")
    assert (first.age, first.expires_in) == (15, 585)
    assert (first.blocks, first.granted, first.replication) == (2, 2 * MiB, 2)
    assert (second.id, second.user, second.path) == (batch.uploads[0].upload_id, "bob", None)
    assert (second.age, second.blocks, second.granted) == (5, 1, 2 * MiB)


def test_writes_wait_for_data_nodes_after_a_restart(ns, clock):
    """Safe mode: a name node that knew data nodes refuses writes, as unavailable and saying
    why, until as many as a block needs (the default replication, 2) have reported."""
    live(ns, "dn-1", "dn-2", "dn-3")  # known to the store from now on
    restarted = restart_membership(ns, dead_after=30, safe_mode_wait=30, clock=clock)
    ns.membership = restarted
    uploads = make_uploads(ns, restarted, lease=600, clock=clock)
    with pytest.raises(Unavailable, match=r"starting: waiting for data nodes \(0 of 2 reported"):
        uploads.start(wire.UploadRequest("/f"), ALICE)
    live(ns, "dn-1")
    with pytest.raises(Unavailable, match=r"\(1 of 2 reported"):
        uploads.start_batch(wire.UploadBatchRequest(4), ALICE)
    assert uploads.count() == 0
    live(ns, "dn-2")
    assert restarted.starting(2) is None
    assert uploads.start(wire.UploadRequest("/f"), ALICE).block.targets
    restarted.nodes["dn-1"].last_heartbeat = clock.now - 1000  # out of safe mode for good
    assert restarted.starting(2) is None


def test_safe_mode_ends_after_its_wait_even_if_nodes_stay_away(ns, clock):
    live(ns, "dn-1", "dn-2")
    restarted = restart_membership(ns, dead_after=30, safe_mode_wait=30, clock=clock)
    ns.membership = restarted
    uploads = make_uploads(ns, restarted, lease=600, clock=clock)
    clock.now += 29
    with pytest.raises(Unavailable):
        uploads.start(wire.UploadRequest("/f"), ALICE)
    clock.now += 1
    with pytest.raises(InsufficientNodes):  # the old answer, once the wait is over
        uploads.start(wire.UploadRequest("/f"), ALICE)


def test_a_new_cluster_or_one_node_ends_safe_mode(ns, clock):
    fresh = restart_membership(ns, dead_after=30, safe_mode_wait=30, clock=clock)
    assert fresh.starting(2) is None  # no data node known: nothing to wait for
    live(ns, "dn-1")
    single = restart_membership(ns, dead_after=30, safe_mode_wait=30, clock=clock)
    assert single.starting(2) == (0, 1)
    single.heartbeat(wire.Heartbeat("dn-1", "http://dn-1.test", "inc-2", 1, 0, 1, 0))
    assert single.starting(2) is None


def test_a_batch_grants_leases_whose_commits_name_the_files(uploads, ns):
    batch = uploads.start_batch(wire.UploadBatchRequest(3, replication=2, block_size=MiB), ALICE)
    assert len({g.upload_id for g in batch.uploads}) == 3
    assert all(g.path == "" and g.replication == 2 for g in batch.uploads)
    first, second, unused = batch.uploads
    for grant, path in ((first, "/a"), (second, "/d/../b")):
        commit = wire.CommitRequest([stored(grant.block, 7)], path=path)
        assert uploads.commit(grant.upload_id, commit, ALICE).size == 7
    assert {e.name for e in ns.listdir("/", None).entries} == {"a", "b"}
    assert in_flight(uploads) == {unused.block.block_id}


def test_a_batch_commit_must_name_a_file_it_may_write(uploads, ns):
    ns.mkdir("/private", None, mode=0o755)
    ns.mkdir("/tmp", None, mode=0o1777)
    bob = User("bob")
    grant = uploads.start_batch(wire.UploadBatchRequest(1), bob).uploads[0]
    block = [stored(grant.block)]
    with pytest.raises(InvalidArgument):
        uploads.commit(grant.upload_id, wire.CommitRequest(block), bob)
    with pytest.raises(PermissionDenied):
        uploads.commit(grant.upload_id, wire.CommitRequest(block, path="/private/f"), bob)
    ns.mkdir("/tmp/x", None)
    with pytest.raises(IsADirectory):
        uploads.commit(grant.upload_id, wire.CommitRequest(block, path="/tmp/x"), bob)
    uploads.commit(grant.upload_id, wire.CommitRequest(block, path="/tmp/f"), bob)
    other = uploads.start_batch(wire.UploadBatchRequest(1), bob).uploads[0]
    refused = wire.CommitRequest([stored(other.block)], path="/tmp/f", overwrite=False)
    with pytest.raises(AlreadyExists):
        uploads.commit(other.upload_id, refused, bob)
    assert ns.stat("/tmp/f", None).blocks[0].id == grant.block.block_id


def test_a_batch_of_commits_gives_each_file_its_own_outcome(uploads, ns):
    """One transaction for them all, but a refused file changes nothing and the others are
    committed; every upload named is closed, a refused one's blocks go to the trash."""
    ns.mkdir("/d", None)
    old = uploads.start_batch(wire.UploadBatchRequest(1), ALICE).uploads[0]
    uploads.commit(old.upload_id, wire.CommitRequest([stored(old.block)], path="/d/old"), ALICE)
    grants = uploads.start_batch(wire.UploadBatchRequest(6), ALICE).uploads
    assert len(grants) == 6
    a, b, exists, nodir, foreign, named = grants
    theirs = uploads.start_batch(wire.UploadBatchRequest(1), User("bob")).uploads[0]
    keep = wire.CommitRequest([stored(exists.block)], path="/d/old", overwrite=False)
    commits = [
        wire.UploadCommit(a.upload_id, wire.CommitRequest([stored(a.block, 3)], path="/d/a")),
        wire.UploadCommit(exists.upload_id, keep),
        wire.UploadCommit(nodir.upload_id, wire.CommitRequest([stored(nodir.block)], "/no/f")),
        wire.UploadCommit(foreign.upload_id, wire.CommitRequest([stored(a.block)], "/d/x")),
        wire.UploadCommit("0" * 32, wire.CommitRequest([], path="/d/gone")),
        wire.UploadCommit(theirs.upload_id, wire.CommitRequest([], path="/d/theirs")),
        wire.UploadCommit(b.upload_id, wire.CommitRequest([stored(b.block, 5)], path="/d/b")),
        wire.UploadCommit(named.upload_id, wire.CommitRequest([stored(named.block)], "/d/b")),
    ]
    results = uploads.commit_many(wire.CommitManyRequest(commits), ALICE).results
    codes = [r.error.code if r.error else r.status.path for r in results]
    assert codes == [
        "/d/a",
        "already_exists",
        "not_found",
        "protocol_error",  # a block of another upload
        "conflict",  # no such upload
        "permission_denied",  # another user's
        "/d/b",
        "/d/b",  # replaces the one just committed, as two commits one after the other would
    ]
    assert {e.name for e in ns.listdir("/d", None).entries} == {"old", "a", "b"}
    assert ns.stat("/d/old", None).blocks[0].id == old.block.block_id
    assert ns.stat("/d/b", None).blocks[0].id == named.block.block_id
    assert in_flight(uploads) == {theirs.block.block_id}  # only bob's upload is still open
    refused = [exists, nodir, foreign]
    assert {block for _, block in trash(ns)} >= {g.block.block_id for g in refused}
    with pytest.raises(ProtocolError):  # an upload named twice
        uploads.commit_many(wire.CommitManyRequest([commits[0], commits[0]]), ALICE)
    with pytest.raises(InvalidArgument):
        uploads.commit_many(wire.CommitManyRequest([]), ALICE)


def test_a_named_upload_commits_only_its_own_path(uploads, ns):
    grant = uploads.start(wire.UploadRequest("/f"), ALICE)
    with pytest.raises(InvalidArgument):
        uploads.commit(grant.upload_id, wire.CommitRequest([stored(grant.block)], "/g"), ALICE)
    uploads.commit(grant.upload_id, wire.CommitRequest([stored(grant.block)], "/./f"), ALICE)
    assert ns.stat("/f", None).size == 100


@pytest.mark.parametrize("count", [0, 65])
def test_a_batch_is_bounded(uploads, count):
    with pytest.raises(InvalidArgument):
        uploads.start_batch(wire.UploadBatchRequest(count), ALICE)
    assert uploads.count() == 0


def _shape(status):
    """A status with each block's nodes as a set (a status lists them in a random order)."""
    fields = msgspec.structs.asdict(status)
    blocks = [(b.id, b.size, b.crc, {n.id for n in b.nodes}) for b in fields.pop("blocks") or []]
    return fields, blocks


def test_what_a_commit_answers_is_what_the_file_is(uploads, ns):
    """A new file's status is made from what the commit wrote, not read back: it must be what a
    stat finds, and its sha256 recorded, for a new file as for one replaced."""
    ns.mkdir("/d", ALICE, mode=0o750)
    for replacing in (False, True):
        grant = uploads.start(wire.UploadRequest("/d/f", replication=2, block_size=MiB), ALICE)
        second = uploads.allocate(grant.upload_id, wire.BlockAllocRequest(), ALICE)
        sha = ("ab" if replacing else "cd") * 32
        blocks = [stored(grant.block, MiB), stored(second, 7, nodes=[second.targets[0].id])]
        status = uploads.commit(grant.upload_id, wire.CommitRequest(blocks, sha256=sha), ALICE)
        assert _shape(status) == _shape(ns.stat("/d/f"))
        assert status.size == MiB + 7 and status.group == ns.stat("/d").group
        assert ns.checksum("/d/f", ALICE).sha256 == sha
    made_now = (
        ns.mkdir("/d/e", ALICE, mode=0o700),
        ns.create_file("/d/g", ALICE),
        ns.symlink("/d/l", "e/x", ALICE),
    )
    for made in made_now:
        assert _shape(made) == _shape(ns.stat(made.path))


def test_a_lone_node_whose_disk_refused_a_block_is_still_written_to(ns):
    """Its refusal may have been passing: with no other node, a write still tries it."""
    live(ns, "dn-1")
    beat = wire.Heartbeat("dn-1", "http://dn-1.test", "inc-1", 100 * MiB, 0, 100 * MiB, 0)
    beat.write_failure = "Input/output error"
    ns.membership.heartbeat(beat)
    uploads = make_uploads(ns, ns.membership, lease=600)
    grant = uploads.start(wire.UploadRequest("/f", replication=1), ALICE)
    assert [n.id for n in grant.block.targets] == ["dn-1"]
