import pytest

from pydfs import wire
from pydfs.errors import (
    AlreadyExists,
    Conflict,
    InsufficientNodes,
    InvalidArgument,
    IsADirectory,
    NoSpace,
    NotFound,
    PermissionDenied,
    ProtocolError,
)
from pydfs.namenode.auth import User
from pydfs.namenode.uploads import MAX_BLOCK_SIZE, MAX_REPLICATION, MIN_BLOCK_SIZE, Uploads

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


@pytest.fixture
def uploads(ns):
    live(ns, "dn-1", "dn-2", "dn-3")
    return Uploads(ns, ns.membership, lease=600)


def test_start_grants_a_first_block(uploads):
    grant = uploads.start(wire.UploadRequest("/d/../f", replication=2, block_size=MiB), ALICE)
    assert (grant.path, grant.replication, grant.block_size) == ("/f", 2, MiB)
    assert len(grant.block.block_id) == 32
    targets = [n.id for n in grant.block.targets]
    assert len(set(targets)) == 2
    assert set(targets) <= {"dn-1", "dn-2", "dn-3"}
    assert all(n.live and n.url == f"http://{n.id}.test" for n in grant.block.targets)
    assert uploads.in_flight() == {grant.block.block_id}


def test_start_uses_namespace_defaults(uploads, ns):
    grant = uploads.start(wire.UploadRequest("/f"), ALICE)
    assert (grant.replication, grant.block_size) == (ns.replication, ns.block_size)


@pytest.mark.parametrize("replication", [0, -1, MAX_REPLICATION + 1])
def test_start_validates_replication(uploads, replication):
    with pytest.raises(InvalidArgument):
        uploads.start(wire.UploadRequest("/f", replication=replication), ALICE)
    assert uploads.in_flight() == set()


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
    assert uploads.in_flight() == set()
    uploads.start(wire.UploadRequest("/f", overwrite=True), ALICE)


def test_start_without_live_nodes(ns):
    uploads = Uploads(ns, ns.membership, lease=600)
    with pytest.raises(InsufficientNodes):
        uploads.start(wire.UploadRequest("/f"), ALICE)
    assert uploads.in_flight() == set()


def test_start_when_live_nodes_are_full(ns):
    uploads = Uploads(ns, ns.membership, lease=600)
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
    assert uploads.in_flight() == set()
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
    assert uploads.in_flight() == {mine.block.block_id, other.block.block_id}


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
    assert uploads.in_flight() == set()
    uploads.abort(grant.upload_id, ALICE)  # aborting twice is harmless
    with pytest.raises(Conflict):
        uploads.allocate(grant.upload_id, wire.BlockAllocRequest(), ALICE)


def test_expire_drops_only_stale_uploads(ns):
    live(ns, "dn-1", "dn-2")
    stale = Uploads(ns, ns.membership, lease=-1.0)  # every lease is already over
    fresh = Uploads(ns, ns.membership, lease=600)
    old = stale.start(wire.UploadRequest("/a"), ALICE)
    new = fresh.start(wire.UploadRequest("/b"), ALICE)
    assert fresh.expire() == 0
    assert stale.expire() == 1
    assert trash(ns) == pairs(old.block)
    assert fresh.in_flight() == {new.block.block_id}
    with pytest.raises(Conflict):
        stale.commit(old.upload_id, wire.CommitRequest([stored(old.block)]), ALICE)


def test_renew_keeps_a_slow_upload_alive(uploads, monkeypatch):
    import pydfs.namenode.uploads as module

    now = [1000.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: now[0])
    slow = uploads.start(wire.UploadRequest("/slow"), ALICE)
    idle = uploads.start(wire.UploadRequest("/idle"), ALICE)
    expired = []
    for _ in range(3):  # 3 times 500 s: longer than the 600 s lease, renewed all along
        now[0] += 500
        uploads.renew(slow.upload_id, ALICE)
        expired.append(uploads.expire())
    assert expired == [0, 1, 0]  # the idle one went once its lease ran out
    assert len(uploads) == 1
    uploads.commit(slow.upload_id, wire.CommitRequest([stored(slow.block)]), ALICE)
    with pytest.raises(Conflict):
        uploads.renew(idle.upload_id, ALICE)


def test_a_batch_grants_leases_whose_commits_name_the_files(uploads, ns):
    batch = uploads.start_batch(wire.UploadBatchRequest(3, replication=2, block_size=MiB), ALICE)
    assert len({g.upload_id for g in batch.uploads}) == 3
    assert all(g.path == "" and g.replication == 2 for g in batch.uploads)
    first, second, unused = batch.uploads
    for grant, path in ((first, "/a"), (second, "/d/../b")):
        commit = wire.CommitRequest([stored(grant.block, 7)], path=path)
        assert uploads.commit(grant.upload_id, commit, ALICE).size == 7
    assert {e.name for e in ns.listdir("/", None).entries} == {"a", "b"}
    assert uploads.in_flight() == {unused.block.block_id}


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
    assert len(uploads) == 0
