import time

import pytest
from tests.unit.namenode.parts import plant_grant, unwrap

from pydfs import wire
from pydfs.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidArgument,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
)
from pydfs.namenode.auth import User

OWNER = User("alice", admin=True)  # permissions have tests of their own


def bid(n: int) -> str:
    return f"{n:032x}"


def put(ns, path, *blocks, nodes=("dn-1", "dn-2"), overwrite=False):
    """Commit *path* as blocks numbered *blocks*, 10 bytes each."""
    stored = [wire.StoredBlock(bid(n), 10, n, list(nodes)) for n in blocks]
    return ns.commit_file(
        path, OWNER, replication=len(nodes), block_size=1024, blocks=stored, overwrite=overwrite
    )


def trash(ns):
    return set(ns.db.execute("SELECT node, block FROM trash"))


def block_ids(status):
    return [b.id for b in status.blocks]


def names(ns, path):
    return [e.name for e in ns.listdir(path).entries]


# --- directories and files ----------------------------------------------------------------


def test_fresh_namespace_has_an_empty_root(ns):
    root = ns.stat("/")
    assert (root.type, root.name, root.path) == ("dir", "/", "/")
    assert ns.listdir("/").entries == []


def test_mkdir(ns):
    status = ns.mkdir("/a", OWNER)
    assert (status.type, status.path, status.owner) == ("dir", "/a", OWNER.name)
    assert ns.stat("/a").type == "dir"
    with pytest.raises(AlreadyExists):
        ns.mkdir("/a", OWNER)
    assert ns.mkdir("/a", OWNER, parents=True).path == "/a"  # -p: an existing dir is fine


def test_mkdir_needs_parents_flag_for_missing_parents(ns):
    with pytest.raises(NotFound):
        ns.mkdir("/x/y/z", OWNER)
    assert names(ns, "/") == []  # nothing half-created
    assert ns.mkdir("/x/y/z", OWNER, parents=True).path == "/x/y/z"
    assert [e.path for e in ns.listdir("/x").entries] == ["/x/y"]
    assert names(ns, "/x/y") == ["z"]


def test_mkdir_with_a_file_in_the_way(ns):
    ns.create_file("/f", OWNER)
    with pytest.raises(AlreadyExists):
        ns.mkdir("/f", OWNER)
    with pytest.raises(AlreadyExists):
        ns.mkdir("/f", OWNER, parents=True)
    with pytest.raises(NotADirectory):
        ns.mkdir("/f/sub", OWNER)
    with pytest.raises(NotADirectory):
        ns.mkdir("/f/sub/deeper", OWNER, parents=True)


def test_create_file(ns):
    status = ns.create_file("/empty.txt", OWNER)
    assert (status.type, status.size, status.blocks) == ("file", 0, [])
    assert (status.replication, status.block_size) == (ns.replication, ns.block_size)
    with pytest.raises(AlreadyExists):
        ns.create_file("/empty.txt", OWNER)
    with pytest.raises(NotFound):
        ns.create_file("/missing/f", OWNER)
    with pytest.raises(NotADirectory):
        ns.create_file("/empty.txt/f", OWNER)
    with pytest.raises(AlreadyExists):
        ns.create_file("/", OWNER)


def test_listdir_is_sorted_and_listing_a_file_gives_the_file(ns):
    for name in ["b", "B", "a", "c.txt", "_"]:
        ns.create_file(f"/{name}", OWNER)
    ns.mkdir("/d", OWNER)
    listing = ns.listdir("/")
    assert [e.name for e in listing.entries] == sorted(["b", "B", "a", "c.txt", "_", "d"])
    assert {e.path for e in listing.entries} == {"/b", "/B", "/a", "/c.txt", "/_", "/d"}
    assert [e.path for e in ns.listdir("/c.txt").entries] == ["/c.txt"]
    with pytest.raises(NotFound):
        ns.listdir("/nope")


def test_stat_reports_blocks_in_order_with_their_nodes(ns):
    put(ns, "/f", 3, 1, 2, nodes=("dn-1", "dn-2"))
    status = ns.stat("/f")
    assert status.size == 30
    assert block_ids(status) == [bid(3), bid(1), bid(2)]
    assert [b.crc for b in status.blocks] == [3, 1, 2]
    assert all(sorted(n.id for n in b.nodes) == ["dn-1", "dn-2"] for b in status.blocks)
    with pytest.raises(NotFound):
        ns.stat("/g")


# --- deletion -----------------------------------------------------------------------------


def test_delete_file_trashes_its_replicas(ns):
    put(ns, "/f", 1, 2)
    assert ns.delete("/f") == 1
    assert names(ns, "/") == []
    assert trash(ns) == {(n, bid(b)) for n in ("dn-1", "dn-2") for b in (1, 2)}
    with pytest.raises(NotFound):
        ns.delete("/f")


def test_delete_checks_the_type(ns):
    ns.mkdir("/d", OWNER)
    ns.create_file("/f", OWNER)
    with pytest.raises(IsADirectory):
        ns.delete("/d", type="file")
    with pytest.raises(NotADirectory):
        ns.delete("/f", type="dir")
    assert names(ns, "/") == ["d", "f"]


def test_delete_directory_recursive_and_non_empty_refusal(ns):
    ns.mkdir("/d/e", OWNER, parents=True)
    put(ns, "/d/e/f", 1)
    put(ns, "/d/g", 2)
    ns.mkdir("/keep", OWNER)
    with pytest.raises(DirectoryNotEmpty):
        ns.delete("/d")
    assert ns.stat("/d/e/f").size == 10
    assert ns.delete("/d", recursive=True) == 2
    assert names(ns, "/") == ["keep"]
    assert {b for _, b in trash(ns)} == {bid(1), bid(2)}
    assert ns.delete("/keep") == 0  # an empty directory needs no flag


def test_root_cannot_be_deleted(ns):
    with pytest.raises(InvalidArgument):
        ns.delete("/", recursive=True)


# --- copies -------------------------------------------------------------------------------


def test_copy_shares_blocks(ns):
    put(ns, "/a.txt", 1, 2)
    ns.mkdir("/d", OWNER)
    copied = ns.copy("/a.txt", "/d/b.txt", User("bob", admin=True))
    assert copied.path == "/d/b.txt"
    assert copied.owner == "bob"
    assert copied.size == 20
    assert block_ids(copied) == block_ids(ns.stat("/a.txt")) == [bid(1), bid(2)]
    (count,) = ns.db.execute("SELECT count(*) FROM blocks").fetchone()
    assert count == 2


def test_copy_default_names(ns):
    put(ns, "/a.txt", 1)
    put(ns, "/README", 2)
    put(ns, "/.profile", 3)
    assert ns.copy("/a.txt", None, OWNER).path == "/a (copy).txt"
    assert ns.copy("/a.txt", None, OWNER).path == "/a (copy 2).txt"
    assert ns.copy("/a.txt", None, OWNER).path == "/a (copy 3).txt"
    assert ns.copy("/README", None, OWNER).path == "/README (copy)"
    assert ns.copy("/.profile", None, OWNER).path == "/.profile (copy)"
    assert block_ids(ns.stat("/a (copy 3).txt")) == [bid(1)]


def test_copy_into_a_directory_keeps_the_name(ns):
    put(ns, "/a.txt", 1)
    ns.mkdir("/d", OWNER)
    assert ns.copy("/a.txt", "/d", OWNER).path == "/d/a.txt"
    assert names(ns, "/d") == ["a.txt"]


def test_copy_refusals(ns):
    put(ns, "/a.txt", 1)
    put(ns, "/b.txt", 2)
    ns.mkdir("/d", OWNER)
    with pytest.raises(AlreadyExists):
        ns.copy("/a.txt", "/a.txt", OWNER)
    with pytest.raises(AlreadyExists):
        ns.copy("/a.txt", "/", OWNER)  # into its own directory: onto itself
    with pytest.raises(AlreadyExists):
        ns.copy("/a.txt", "/b.txt", OWNER)
    with pytest.raises(IsADirectory):
        ns.copy("/d", "/e", OWNER)
    with pytest.raises(NotFound):
        ns.copy("/nope", "/e", OWNER)
    with pytest.raises(NotFound):
        ns.copy("/a.txt", "/missing/e", OWNER)
    assert block_ids(ns.stat("/b.txt")) == [bid(2)]


def test_copy_overwrite_releases_the_replaced_blocks(ns):
    put(ns, "/a", 1)
    put(ns, "/b", 2)
    status = ns.copy("/a", "/b", OWNER, overwrite=True)
    assert block_ids(status) == [bid(1)]
    assert trash(ns) == {("dn-1", bid(2)), ("dn-2", bid(2))}
    assert names(ns, "/") == ["a", "b"]


def test_copy_overwriting_a_copy_keeps_shared_blocks(ns):
    put(ns, "/a", 1)
    ns.copy("/a", "/b", OWNER)
    ns.copy("/a", "/b", OWNER, overwrite=True)
    assert trash(ns) == set()
    assert block_ids(ns.stat("/b")) == [bid(1)]


# --- moves --------------------------------------------------------------------------------


def test_move_renames(ns):
    put(ns, "/a", 1)
    status = ns.move("/a", "/b")
    assert status.path == "/b"
    assert block_ids(status) == [bid(1)]
    assert names(ns, "/") == ["b"]
    assert trash(ns) == set()


def test_move_into_a_directory_moves_the_subtree(ns):
    ns.mkdir("/src/sub", OWNER, parents=True)
    put(ns, "/src/sub/f", 1)
    ns.mkdir("/dst", OWNER)
    assert ns.move("/src", "/dst").path == "/dst/src"
    assert block_ids(ns.stat("/dst/src/sub/f")) == [bid(1)]
    assert names(ns, "/") == ["dst"]


def test_move_a_directory_into_itself_is_refused(ns):
    ns.mkdir("/a/b", OWNER, parents=True)
    with pytest.raises(InvalidArgument):
        ns.move("/a", "/a/b")
    with pytest.raises(InvalidArgument):
        ns.move("/a", "/a/b/c")
    with pytest.raises(InvalidArgument):
        ns.move("/", "/a")
    assert names(ns, "/a") == ["b"]


def test_move_onto_an_existing_file(ns):
    put(ns, "/a", 1)
    put(ns, "/b", 2)
    with pytest.raises(AlreadyExists):
        ns.move("/a", "/b")
    assert block_ids(ns.stat("/b")) == [bid(2)]
    assert ns.move("/a", "/b", overwrite=True).path == "/b"
    assert names(ns, "/") == ["b"]
    assert block_ids(ns.stat("/b")) == [bid(1)]
    assert trash(ns) == {("dn-1", bid(2)), ("dn-2", bid(2))}


def test_move_a_directory_onto_a_file_is_refused(ns):
    ns.mkdir("/d", OWNER)
    put(ns, "/f", 1)
    with pytest.raises(AlreadyExists):
        ns.move("/d", "/f", overwrite=True)
    assert ns.stat("/f").type == "file"


# --- commits ------------------------------------------------------------------------------


def test_commit_creates_and_refuses_without_overwrite(ns):
    status = put(ns, "/f", 1, 2)
    assert (status.size, block_ids(status)) == (20, [bid(1), bid(2)])
    with pytest.raises(AlreadyExists):
        put(ns, "/f", 3)
    with pytest.raises(IsADirectory):
        put(ns, "/", 3)
    ns.mkdir("/d", OWNER)
    with pytest.raises(IsADirectory):
        put(ns, "/d", 3, overwrite=True)
    assert block_ids(ns.stat("/f")) == [bid(1), bid(2)]


def test_commit_replaces_atomically_and_trashes_old_blocks(ns):
    put(ns, "/f", 1, 2)
    status = put(ns, "/f", 3, nodes=("dn-3",), overwrite=True)
    assert (status.size, block_ids(status), status.replication) == (10, [bid(3)], 1)
    assert trash(ns) == {(n, bid(b)) for n in ("dn-1", "dn-2") for b in (1, 2)}
    (count,) = ns.db.execute("SELECT count(*) FROM blocks").fetchone()
    assert count == 1


def test_commit_replace_keeps_blocks_a_copy_still_uses(ns):
    put(ns, "/f", 1, 2)
    ns.copy("/f", "/g", OWNER)
    put(ns, "/f", 3, overwrite=True)
    assert trash(ns) == set()
    assert block_ids(ns.stat("/g")) == [bid(1), bid(2)]
    ns.delete("/g")
    assert trash(ns) == {(n, bid(b)) for n in ("dn-1", "dn-2") for b in (1, 2)}


# --- format, block reports, trash ----------------------------------------------------------


def test_format(ns):
    ns.mkdir("/d", OWNER)
    put(ns, "/d/f", 1, 2)
    ns.copy("/d/f", "/g", OWNER)
    assert ns.format() == (2, 2)
    assert names(ns, "/") == []
    assert ns.stat("/").type == "dir"
    assert trash(ns) == {(n, bid(b)) for n in ("dn-1", "dn-2") for b in (1, 2)}


def test_reconcile_trashes_unknown_blocks_and_has_uncounted_ones_verified(ns):
    put(ns, "/f", 1, nodes=("dn-1",))
    plant_grant(ns, bid(51), ["dn-9"])  # an upload in flight: its commit will count it
    uncounted = ns.reconcile("dn-9", [bid(1), bid(50), bid(51)], time.time())
    assert trash(ns) == {("dn-9", bid(50))}
    assert uncounted == [bid(1)]  # to verify: a report names blocks, it proves nothing
    assert {n.id for n in ns.stat("/f").blocks[0].nodes} == {"dn-1"}
    assert ns.reconcile("dn-1", [bid(1)], time.time()) == []  # counted already


def test_a_replica_counts_only_with_the_size_and_crc_recorded(ns):
    put(ns, "/f", 1, nodes=("dn-1",))  # 10 bytes, CRC 1
    changed, bad = ns.add_replicas("dn-2", [wire.Received(bid(1), 10, 2, "c")])
    assert (changed, bad) == (1, [bid(1)])  # other bytes under the id: trashed, not counted
    assert trash(ns) == {("dn-2", bid(1))}
    assert ns.add_replicas("dn-3", [wire.Received(bid(1), 11, 1, "c")])[1] == [bid(1)]
    assert ns.add_replicas("dn-2", [wire.Received(bid(1), 10, 1, "c")]) == (1, [])
    assert {n.id for n in ns.stat("/f").blocks[0].nodes} == {"dn-1", "dn-2"}
    assert trash(ns) == {("dn-3", bid(1))}  # a good copy is not deleted for the bad one
    # A counted replica found to hold other bytes stops counting.
    assert ns.add_replicas("dn-1", [wire.Received(bid(1), 10, 9, "v")]) == (2, [bid(1)])
    assert {n.id for n in ns.stat("/f").blocks[0].nodes} == {"dn-2"}


def test_a_late_write_of_a_committed_block_never_counts(ns):
    """Bytes made to match the recorded CRC, written with a leftover token to a node the
    grant named but the commit did not: trashed, though their size and CRC are right."""
    put(ns, "/f", 1, nodes=("dn-1",))
    assert ns.add_replicas("dn-2", [wire.Received(bid(1), 10, 1, "w")]) == (1, [])
    assert {n.id for n in ns.stat("/f").blocks[0].nodes} == {"dn-1"}
    assert trash(ns) == {("dn-2", bid(1))}


def test_a_verified_replica_counts_only_when_no_counted_one_is_live(ns):
    put(ns, "/f", 1, nodes=("dn-1",))
    ns.membership.heartbeat(wire.Heartbeat("dn-1", "http://dn-1", "i", 100, 0, 100, 0))
    assert ns.add_replicas("dn-2", [wire.Received(bid(1), 10, 1, "v")]) == (1, [])
    assert {n.id for n in ns.stat("/f").blocks[0].nodes} == {"dn-1"}  # trashed: surplus
    ns.drop_replicas("dn-1", [bid(1)])  # the last counted copy lost
    assert ns.add_replicas("dn-3", [wire.Received(bid(1), 10, 1, "v")]) == (1, [])
    assert {n.id for n in ns.stat("/f").blocks[0].nodes} == {"dn-3"}


def test_reconcile_forgets_lost_replicas_counted_before_the_listing_began(ns):
    put(ns, "/f", 1, nodes=("dn-1", "dn-2"))
    ns.reconcile("dn-1", [], time.time() - 60)  # counted after the listing began
    assert {n.id for n in ns.stat("/f").blocks[0].nodes} == {"dn-1", "dn-2"}
    ns.reconcile("dn-1", [], time.time() + 1)
    assert {n.id for n in ns.stat("/f").blocks[0].nodes} == {"dn-2"}


def test_reconcile_forgets_trash_the_node_no_longer_has(ns):
    ns.trash([("dn-1", bid(7)), ("dn-1", bid(8)), ("dn-2", bid(7))])
    ns.reconcile("dn-1", [bid(8)], time.time())
    assert trash(ns) == {("dn-1", bid(8)), ("dn-2", bid(7))}


def test_trash_for_hands_out_and_forgets(ns):
    put(ns, "/f", 1, 2)
    ns.delete("/f")
    assert sorted(ns.trash_for("dn-1")) == [bid(1), bid(2)]
    assert ns.trash_for("dn-1") == []
    assert sorted(ns.trash_for("dn-2", limit=1) + ns.trash_for("dn-2")) == [bid(1), bid(2)]
    assert trash(ns) == set()


# --- persistence --------------------------------------------------------------------------


def test_everything_survives_a_reopen(open_ns):
    ns = open_ns()
    ns.mkdir("/a/b", OWNER, parents=True)
    put(ns, "/a/b/f", 1, 2)
    ns.copy("/a/b/f", "/g", OWNER)
    put(ns, "/old", 3)
    ns.delete("/old")
    before = (ns.stat("/a/b/f"), ns.stat("/g"), ns.listdir("/"), trash(ns))
    ns.store.close()

    again = open_ns()
    after = (again.stat("/a/b/f"), again.stat("/g"), again.listdir("/"), trash(again))
    for status in (before[0], before[1], after[0], after[1]):
        for block in status.blocks:
            block.nodes.sort(key=lambda n: n.id)
    assert after == before
    assert block_ids(after[1]) == [bid(1), bid(2)]
    assert trash(again) == {("dn-1", bid(3)), ("dn-2", bid(3))}


def test_block_report_does_not_recount_a_replica_with_a_pending_delete(ns):
    """A report listed before a trim's delete order reached the node must not bring the
    trimmed replica back: the next trim would then take a real copy."""
    ns.mkdir("/r", OWNER)
    block = wire.StoredBlock("c" * 32, 10, 123, ["n1", "n2"])
    ns.commit_file("/r/f", OWNER, replication=1, block_size=4096, blocks=[block], overwrite=False)
    ns.drop_surplus(block.block_id, ["n2"])  # trimmed: delete order queued for n2
    ns.reconcile("n2", [block.block_id], time.time())  # n2's report still lists it
    holders = {n.id for n in ns.stat("/r/f").blocks[0].nodes}
    assert holders == {"n1"}
    assert ns.trash_for("n2") == [block.block_id]


# --- the directory cache ------------------------------------------------------------------

BOB = User("bob")


def test_a_walk_sees_every_change_to_the_directories_on_its_way(ns):
    """Deep paths are walked through cached directories: chmod, chown, move and delete of one
    on the way must count at once."""
    ns.mkdir("/a/b/c", OWNER, parents=True)
    put(ns, "/a/b/c/f", 1)
    assert ns.stat("/a/b/c/f", BOB).size == 10  # walked, and cached, as bob
    ns.chmod("/a/b", 0o700, OWNER)
    with pytest.raises(PermissionDenied):
        ns.stat("/a/b/c/f", BOB)
    ns.chown("/a/b", "bob", None, OWNER)
    assert ns.stat("/a/b/c/f", BOB).size == 10
    ns.move("/a/b", "/a/moved", OWNER)
    assert ns.lookup("/a/b/c/f") is None
    assert ns.stat("/a/moved/c/f").size == 10
    ns.delete("/a/moved", OWNER, recursive=True)
    ns.mkdir("/a/moved/c", OWNER, parents=True)  # the same names, new directories
    assert ns.lookup("/a/moved/c/f") is None
    put(ns, "/a/moved/c/f", 2)
    assert block_ids(ns.stat("/a/moved/c/f")) == [bid(2)]


def test_a_walk_returns_the_last_component_fresh(ns):
    ns.mkdir("/d/e", OWNER, parents=True)
    put(ns, "/d/e/f", 1)
    ns.stat("/d/e/f")  # /d and /d/e cached on the way
    before = ns.stat("/d/e").mtime
    put(ns, "/d/e/g", 2)
    assert ns.stat("/d/e").mtime >= before
    assert names(ns, "/d/e") == ["f", "g"]
    ns.chmod("/d/e/f", 0o600, OWNER)
    assert ns.stat("/d/e/f").mode == 0o600


def test_directories_a_rolled_back_write_made_are_never_walked_through(ns, loop):
    ns.mkdir("/r", OWNER)
    namespace = unwrap(ns).namespace

    async def rolled_back() -> None:
        async with namespace.tree.writing() as walk:  # as mkdir's, create's, commit's
            parent = await walk.resolve("/r")
            ghost = await namespace.insert(walk.tx, parent, "ghost", "d", OWNER)
            assert ghost.id and await walk.lookup("/r/ghost/x") is None  # walked inside it
            raise KeyError("rolled back")

    with pytest.raises(KeyError):
        loop.run_until_complete(rolled_back())
    put(ns, "/r/ghost", 1)  # a file now has that name
    with pytest.raises(NotADirectory):
        ns.lookup("/r/ghost/x")


def test_writes_in_a_cached_directory_see_its_new_mode_and_owner(ns):
    ns.mkdir("/w", OWNER, mode=0o777)
    ns.create_file("/w/one", BOB)  # /w remembered by the write
    ns.chmod("/w", 0o755, OWNER)
    with pytest.raises(PermissionDenied):
        ns.create_file("/w/two", BOB)
    with pytest.raises(PermissionDenied):
        ns.mkdir("/w/sub", BOB)
    ns.chown("/w", "bob", None, OWNER)
    assert ns.mkdir("/w/sub", BOB).owner == "bob"
    assert put(ns, "/w/sub/f", 1).size == 10


def test_a_file_the_caller_may_not_read_is_stated_without_its_blocks(ns):
    """Its blocks' CRCs would give away a small file's content (a PIN, by brute force)."""
    put(ns, "/pin", 1)
    ns.chmod("/pin", 0o600, OWNER)
    secret = ns.stat("/pin", BOB)
    assert (secret.size, secret.owner, secret.blocks) == (10, "alice", None)
    with pytest.raises(PermissionDenied):
        ns.stat("/pin", BOB, read=True)
    assert [b.crc for b in ns.stat("/pin", OWNER).blocks] == [1]
    ns.chmod("/pin", 0o644, OWNER)
    assert [b.crc for b in ns.stat("/pin", BOB).blocks] == [1]
