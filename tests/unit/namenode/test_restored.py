"""After a restore of the metadata from a backup, the block map deletes no block that no file
names (files written after the backup: their only copies); it lists them for fsck, with the
files whose blocks are gone, until the admin lets them go."""

import time

from tests.unit.namenode.test_namespace import bid, put, trash

from pydfs import wire


def restored(ns):
    with ns.store.transaction() as db:
        db.execute("INSERT INTO provenance VALUES (1, 100.0, 200.0)")


def test_unnamed_blocks_are_trashed_unless_a_restore_awaits(ns):
    put(ns, "/f", 1, nodes=("dn-1",))
    ns.reconcile("dn-1", [bid(1), bid(50)], time.time())
    assert trash(ns) == {("dn-1", bid(50))}  # the usual rule
    assert ns.fsck("/", set(), set(), set(), files=False).restore is None
    ns.db.execute("DELETE FROM trash")

    restored(ns)
    verify = ns.reconcile("dn-1", [bid(1), bid(50), bid(51)], time.time())
    assert trash(ns) == set()
    assert bid(50) in verify and bid(51) in verify  # measured by the node's verification
    changed, bad = ns.add_replicas("dn-1", [wire.Received(bid(50), 4096, 7, "v")])
    assert (changed, bad, trash(ns)) == (0, [], set())
    # a write the restored name node never granted (committed before the restore, say)
    ns.add_replicas("dn-2", [wire.Received(bid(52), 100, 7, "w")])
    assert trash(ns) == set()
    report = ns.fsck("/", {"dn-1"}, {"dn-1"}, set(), files=False)
    assert report.status == "RESTORED"
    kept = report.restore
    assert (kept.taken, kept.restored) == (100.0, 200.0)
    assert (kept.blocks, kept.replicas, kept.bytes, kept.unmeasured) == (3, 3, 4196, 1)

    gone = ns.finish_restore()
    assert gone.blocks == 3
    assert ns.finish_restore() is None
    ns.reconcile("dn-1", [bid(1), bid(50), bid(51)], time.time())
    assert trash(ns) == {("dn-1", bid(50)), ("dn-1", bid(51))}


def test_fsck_names_the_files_whose_blocks_are_gone(ns):
    put(ns, "/kept", 1, nodes=("dn-1",))
    put(ns, "/gone-a", 2, nodes=("dn-1",))
    put(ns, "/gone-b", 3, 4, nodes=("dn-1",))
    restored(ns)
    ns.reconcile("dn-1", [bid(1)], time.time() + 60)  # the node lost the others
    report = ns.fsck("/", {"dn-1"}, {"dn-1"}, set(), files=False)
    assert report.status == "MISSING BLOCKS"
    assert (report.missing, report.missing_files) == (3, 2)
    assert report.missing_paths == ["/gone-a", "/gone-b"]
    assert report.restore is not None and report.restore.blocks == 0
