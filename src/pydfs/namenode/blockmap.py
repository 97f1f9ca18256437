"""Which data nodes hold which blocks: counting replicas (only those the name node can vouch
for), the trash of replicas to delete, block reports, and block health.

A committed block never changes. A replica of one counts only when its data node reports the
recorded size and CRC, and the name node asked for it (see ``add_replicas``); anything else a
node holds is trashed, unless an open upload's grant named that node for it (the upload's commit
counts it). Upload grants are in the store, so every name node judges reports alike.

Only the leading name node counts, trims and reconciles (``leadership``): those changes are made
in its guarded transactions, which a deposed leader cannot commit.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from pydfs import wire
from pydfs.namenode.leadership import Leadership
from pydfs.namenode.membership import Membership
from pydfs.namenode.store import Store
from pydfs.namenode.store.interface import Misreplicated
from pydfs.namenode.tree import Tree, Walk


class BlockMap:
    def __init__(
        self, store: Store, membership: Membership, tree: Tree, leadership: Leadership
    ) -> None:
        self.store = store
        self.membership = membership
        self.tree = tree
        self.lead = leadership

    async def reconcile(
        self, node_id: str, reported: Iterable[str], listed_after: float
    ) -> list[str]:
        """Apply a full block report: trash the replicas nobody needs, forget the counted ones
        the node no longer has (unless counted after *listed_after*, when its listing may have
        begun), and return the blocks it holds that are not counted there: the node is to
        verify them, and they count once it reports them good with the recorded CRC
        (``add_replicas``), never on its word alone."""
        reported = set(reported)
        async with self.lead.write() as tx:
            known = await tx.blocks.known(reported)
            counted = await tx.blocks.on_node(node_id)
            trashed = set(await tx.blocks.trashed_on(node_id))
            # A replica with a delete order still pending is on its way out (trimmed, say):
            # counting it again would let the next trim take a real copy.
            uncounted = sorted(known - counted.keys() - trashed)
            unknown = reported - known
            if await tx.restore.state() is None:
                # Judged again in one statement: a commit through another name node may have
                # made one of them a block since ``known`` looked.
                await tx.blocks.trash_unknown((node_id, b) for b in sorted(unknown))
            else:  # written after the backup the metadata was restored from: keep, measure
                unknown -= await tx.uploads.in_flight(unknown)
                uncounted += await tx.restore.keep(node_id, unknown)
            await tx.blocks.drop_replicas(
                (b, node_id)
                for b, added in counted.items()
                if b not in reported and added < listed_after
            )
            await tx.blocks.untrash((node_id, b) for b in trashed - reported)
        return uncounted

    async def trash_for(self, node_id: str, limit: int = 10_000) -> list[str]:
        """Hand out (and forget) replicas *node_id* must delete. An order lost with a crashed
        data node is repaired by its next block report: an unknown block is trashed again, and
        a surplus replica of a live block is counted again and trimmed again."""
        async with self.store.read() as tx:  # most heartbeats find none: no write then
            if not await tx.blocks.trashed_on(node_id, 1):
                return []
        async with self.store.write() as tx:
            blocks = await tx.blocks.trashed_on(node_id, limit)
            await tx.blocks.untrash((node_id, b) for b in blocks)
        return blocks

    async def trash(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Queue (node, block) replicas of blocks never committed, such as an aborted upload's."""
        pairs = list(pairs)
        if pairs:  # most commits use every block they were granted: no transaction for none
            async with self.store.write() as tx:
                await tx.blocks.trash(pairs)

    async def add_replicas(
        self, node_id: str, received: list[wire.Received]
    ) -> tuple[int, list[str]]:
        """A data node stored, or verified, these replicas. One of a committed block counts
        only if its size and CRC are those recorded (a committed block never changes: other
        bytes under its id, a swapped file's, are trashed and returned as bad) and the name node
        asked for it: a copy it ordered, or a replica it had verified because no counted one
        is left on a live node. A client's write counts through its commit alone: a CRC32C is
        no proof against bytes made to match one, so a late write, under a leftover token, is
        trashed. One of an upload still in flight is counted by its commit, if the grant named
        this node; anything else is trashed. Returns how many replicas this changed, and the
        bad ones."""
        changed, bad = 0, []
        now = time.time()
        live = {n.id for n in self.membership.live()}
        async with self.lead.write() as tx:
            for got in received:
                block = await tx.blocks.get(got.block)
                if block is not None and (got.size, got.crc) == (block.size, block.crc):
                    counted = await tx.blocks.holders(got.block)
                    wanted = got.how == "c" or (
                        got.how == "v" and not any(n in live for n in counted)
                    )
                    if node_id in counted or not wanted:
                        if node_id not in counted:  # surplus and unasked for: never a last copy
                            changed += await tx.blocks.trash([(node_id, got.block)])
                        continue
                    changed += await tx.blocks.add_replica(got.block, node_id, now)
                    # A fresh copy must not fall to a delete order given for an older one.
                    await tx.blocks.untrash([(node_id, got.block)])
                    continue
                if block is not None:
                    bad.append(got.block)
                    changed += await tx.blocks.drop_replicas([(got.block, node_id)])
                    changed += await tx.blocks.trash([(node_id, got.block)])
                elif await tx.restore.state() is not None:  # kept: see ``reconcile``
                    if node_id not in (await tx.uploads.grant_of(got.block) or ()):
                        await tx.restore.measured(node_id, got.block, got.size)
                else:  # an upload's, if its grant named this node (one statement: reconcile)
                    changed += await tx.blocks.trash_unknown([(node_id, got.block)])
        return changed, bad

    async def drop_replicas(self, node_id: str, blocks: list[str]) -> None:
        """Forget replicas that *node_id* no longer has (it quarantined them)."""
        async with self.lead.write() as tx:
            await tx.blocks.drop_replicas((b, node_id) for b in blocks)

    async def drop_surplus(self, block: str, nodes: list[str]) -> None:
        """Surplus replicas: forget them and order their nodes to delete them."""
        async with self.lead.write() as tx:
            await tx.blocks.drop_replicas((block, n) for n in nodes)
            await tx.blocks.trash((n, block) for n in nodes)

    async def holds(self, node_id: str, block: str) -> bool:
        async with self.store.read() as tx:
            return await tx.blocks.holds(node_id, block)

    async def size_of(self, block: str) -> int:
        async with self.store.read() as tx:
            found = await tx.blocks.get(block)
        return found.size if found else 0

    async def replication_work(self, serving: set[str]) -> list[Misreplicated]:
        """(block, size, required replicas, nodes holding it) for every block whose count of
        replicas on serving nodes is not what its files require; the fewest replicas first."""
        async with self.store.read() as tx:
            return await tx.blocks.misreplicated(serving)

    async def blocks_needing(self, node_id: str, serving: set[str]) -> int:
        """How many blocks on *node_id* still lack their replicas on serving nodes."""
        async with self.store.read() as tx:
            return await tx.blocks.lacking_on(node_id, serving)

    async def fsck(
        self, path: str, live: set[str], serving: set[str], corrupt: set[str], *, files: bool
    ) -> wire.FsckReport:
        """Block health below *path*: healthy (enough replicas on serving nodes), under-replicated
        (readable, but too few), missing (no replica on a live node), corrupt (a replica failed
        verification and has not been replaced yet)."""
        async with self.tree.reading() as walk:
            node = await walk.resolve(path)
            subtree = await walk.tx.inodes.subtree(node.id) if node.is_dir else [node]
            rows = await walk.tx.blocks.health([n.id for n in subtree], serving, live)
            report = wire.FsckReport(path=path)
            per_file: dict[int, wire.FileHealth] = {}
            for row in rows:
                health = per_file.get(row.inode)
                if health is None:
                    health = per_file[row.inode] = wire.FileHealth(path="")
                health.blocks += 1
                report.blocks += 1
                if row.readable == 0:
                    health.missing += 1
                    report.missing += 1
                elif row.serving < row.required:
                    health.under_replicated += 1
                    report.under_replicated += 1
                else:
                    health.healthy += 1
                    report.healthy += 1
                if row.block in corrupt:
                    health.corrupt += 1
                    report.corrupt += 1
            report.files = sum(not n.is_dir for n in subtree)
            await _missing_and_kept(walk, report, per_file)
            if files:
                for inode, health in sorted(per_file.items()):
                    health.path = await walk.path_of(inode)
                    report.file_details.append(health)
        return report

    async def finish_restore(self) -> wire.Orphans | None:
        """The admin lets the blocks kept since a restore go: forget them and the restore
        (the next block reports then trash them); what they were, or None if no restore
        awaited."""
        async with self.store.write() as tx:
            restored = await tx.restore.state()
            if restored is None:
                return None
            kept = await tx.restore.finish()
        return wire.Orphans(restored.taken, restored.restored, *kept)


async def _missing_and_kept(
    walk: Walk, report: wire.FsckReport, per_file: dict[int, wire.FileHealth]
) -> None:
    """The files with a block gone, by path (after a restore: those deleted after the backup),
    and the blocks kept since a restore that no file names (written after the backup)."""
    missing = sorted(inode for inode, health in per_file.items() if health.missing)
    report.missing_files = len(missing)
    listed = missing[: wire.MAX_MISSING_LISTED]
    report.missing_paths = sorted([await walk.path_of(inode) for inode in listed])
    restored = await walk.tx.restore.state()
    if restored is not None:
        kept = await walk.tx.restore.orphans()
        report.restore = wire.Orphans(restored.taken, restored.restored, *kept)
