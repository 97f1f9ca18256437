"""The name node: the namespace, the data node registry and upload leases behind one HTTP API.

Several name nodes may share one metadata store (PostgreSQL): each serves clients and hears
every data node's heartbeats, and the one holding the lease (``leadership``) does the
background work and gives data nodes their orders.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from pydfs import server, tokens, wire
from pydfs.config import NameNodeConfig
from pydfs.errors import Conflict, InvalidArgument, PermissionDenied, Unavailable
from pydfs.namenode import app, auth, fastpath
from pydfs.namenode.attributes import Attributes
from pydfs.namenode.backups import Backups
from pydfs.namenode.blockmap import BlockMap
from pydfs.namenode.census import Census
from pydfs.namenode.commits import Commits
from pydfs.namenode.leadership import Leadership, NotLeader
from pydfs.namenode.membership import Membership
from pydfs.namenode.namespace import Namespace
from pydfs.namenode.replication import Replicator
from pydfs.namenode.store import Store, open_store, sqlite_url
from pydfs.namenode.suspects import Suspects
from pydfs.namenode.uploads import MAX_REPLICATION, Uploads

log = logging.getLogger("pydfs.namenode")

REPORT_TRANSIT = 10.0  # seconds a block report may take from its data node to here
HOLD = 20.0  # seconds a write is held at most while the name node waits for data nodes

__all__ = ["NameNode", "metadata_url", "run"]


def metadata_url(config: NameNodeConfig) -> str:
    """The store's URL: ``metadata``, where "sqlite" is the file in the data directory."""
    if config.metadata == "sqlite":
        return sqlite_url(config.data_dir / "namespace.sqlite3")
    return config.metadata


class NameNode:
    """Made by ``await NameNode.open(config)``."""

    def __init__(
        self, config: NameNodeConfig, store: Store, secret: bytes, lock: object = None
    ) -> None:
        self.config = config
        self.store = store
        self.secret = secret
        self._lock = lock  # of the data directory, held while this name node lives
        self.leadership = Leadership(store, config.leader_lease)
        self.leadership.on_lead = self._took_lead
        self.membership: Membership = Membership(
            self.store, dead_after=config.dead_after, safe_mode_wait=config.safe_mode_wait
        )
        self.namespace: Namespace = Namespace(
            self.store,
            self.membership,
            replication=config.replication,
            block_size=config.block_size,
            umask=config.umask,
        )
        self.namespace.read_token = lambda block: self.block_token(block, "r")
        self.attributes: Attributes = Attributes(self.namespace.tree)
        self.commits: Commits = Commits(self.namespace)
        self.blockmap: BlockMap = BlockMap(
            self.store, self.membership, self.namespace.tree, self.leadership
        )
        self.users: auth.Users = auth.Users(self.store)
        self.uploads: Uploads = Uploads(
            self.commits,
            self.membership,
            lease=config.upload_lease,
            lifetime=config.upload_lifetime,
            max_open=config.max_open_uploads,
            write_token=lambda block, targets: self.block_token(
                block, "w", [(t.id, t.url) for t in targets]
            ),
        )
        self.replicator: Replicator = Replicator(
            self.blockmap,
            self.membership,
            max_copies_per_node=config.max_copies_per_node,
            copy_timeout=config.copy_timeout,
        )
        self.suspects: Suspects = Suspects(self.blockmap)  # replicas readers found bad
        self.census: Census = Census(self)
        self.backups: Backups = Backups(
            store,
            config.data_dir,
            every=config.backup_every,
            directory=config.backup_dir,
            keep=config.backup_keep,
        )
        self._up = asyncio.Event()  # set once out of safe mode (see ``waiting``)
        self.uploads.on_commit = self._committed

    @classmethod
    async def open(cls, config: NameNodeConfig) -> NameNode:
        """Lock the data directory, open the metadata store, and make a fresh file system's
        root, first admin, /tmp and homes."""
        lock = server.lock_data_dir(config.data_dir, "namenode")
        config.data_dir.chmod(0o700)  # names, token hashes, the cluster secret: the owner's only
        secret = tokens.load_or_create_secret(
            config.secret_file or config.data_dir / tokens.SECRET_FILE
        )
        nn = cls(config, open_store(metadata_url(config)), secret, lock)
        nn.backups.sweep()
        await nn.membership.load()
        await nn.namespace.open()
        await nn.users.drop_reserved()
        if await nn.users.bootstrap(config.data_dir / auth.TOKEN_FILE):
            log.warning(
                "created user %r; its token is in %s",
                auth.BOOTSTRAP_ADMIN,
                config.data_dir / auth.TOKEN_FILE,
            )
        await nn._layout()
        if not nn.store.shared:  # no other process can lead: a crashed one's lease ends now
            async with nn.store.write() as tx:
                await tx.leader.resign((await tx.leader.current()).holder)
        await nn.leadership.renew()
        return nn

    def block_token(
        self, block_id: str, mode: tokens.Mode, targets: list[tokens.Target] | None = None
    ) -> str:
        return tokens.block_token(
            self.secret, block_id, mode, self.config.block_token_lifetime, targets or ()
        )

    async def _layout(self) -> None:
        """What a fresh or just initialised file system holds: /tmp (1777) and every home."""
        await self.namespace.layout([u.name for u in await self.users.all()])

    # --- users ----------------------------------------------------------------------------

    def state(self) -> wire.NameNodeState:
        lead, lease = self.leadership, self.leadership.lease
        return wire.NameNodeState(
            url=lead.url,
            leads=lead.leads(),
            leader=lease.url if lease and lease.left > 0 else "",
            epoch=lease.epoch if lease else 0,
            lease_left=max(0.0, lease.left) if lease else 0.0,
            takeovers=lead.took_lead,
            metadata=self.store.url.split(":", 1)[0],
            metadata_up=lead.store_up,
            metadata_lost=self.store.lost,
        )

    async def add_user(self, spec: wire.NewUser) -> wire.UserToken:
        """The home first: a user must never exist whose token was not shown (the home of a
        name refused, say taken, is harmless: an admin may remove it)."""
        auth.validate_user_name(spec.name)
        await self.namespace.make_home(spec.name)
        token = await self.users.add(spec.name, admin=spec.admin, groups=spec.groups)
        return wire.UserToken(spec.name, token)

    async def format(self, user: auth.User) -> wire.FormatReply:
        if not user.admin:
            raise PermissionDenied("only an admin may initialize the file system")
        files, blocks = await self.namespace.format()
        await self.blockmap.finish_restore()  # wiped: blocks kept since a restore go too
        self.membership.request_reports()  # so that blocks the namespace never knew go too
        await self._layout()
        return wire.FormatReply(files, blocks, self.membership.space(self.namespace.replication))

    def _committed(self, blocks: list[wire.StoredBlock], replication: int) -> None:
        """A write whose pipeline lost a node committed short blocks: have them healed."""
        if any(len(b.nodes) < replication for b in blocks):
            self._heal()

    def _heal(self) -> None:
        """Something changed that the replication scan must see (the leader's)."""
        self.replicator.dirty = True
        if not self.leadership.leads():
            self.leadership.nudge()

    def _took_lead(self) -> None:
        """What another leader knew is not ours: start the replication afresh, and have every
        data node report its blocks, since reports went to that leader."""
        self.replicator.restart()
        self.membership.request_reports()

    async def heartbeat(self, hb: wire.Heartbeat) -> wire.HeartbeatReply:
        """Take in what a data node reports; answer with the work it is to do. Every data node
        heartbeats to every name node: one that does not lead only learns that the node lives
        (the leader hears the same news, and gives the orders)."""
        node, restarted = await self.membership.heartbeat(hb)
        if not self._up.is_set() and self.waiting() is None:
            self._up.set()  # writes held since the start go on
        commands: list[wire.Command] = []
        if self.leadership.leads():
            try:
                commands = await self._lead(node.id, hb, restarted)
            except NotLeader:
                commands = []
        if verify := self.suspects.orders_for(node.id):  # any name node may ask for these
            commands.append(wire.Command(op="verify", blocks=verify))
        wants_report = node.wants_report and self.leadership.leads()
        return wire.HeartbeatReply(commands=commands, send_report=wants_report)

    async def _lead(self, node_id: str, hb: wire.Heartbeat, restarted: bool) -> list[wire.Command]:
        """The leader's part of a heartbeat: count what the node reports, hand out its work."""
        if restarted:
            self.replicator.forget_orders(node_id)  # a new process knows nothing of them
        await self.replicator.received(node_id, hb.received)
        await self.replicator.corrupt_replicas(node_id, hb.corrupt)
        self.suspects.changed(node_id, [*(r.block for r in hb.received), *hb.corrupt])
        if hb.failed_copies:
            self.replicator.copy_failed(node_id, hb.failed_copies)
        commands = await self.delete_orders(node_id) + self.replicator.orders_for(node_id)
        for command in commands:
            if command.op == "replicate" and command.target is not None:
                target = [(command.target.id, command.target.url)]
                command.tokens = [self.block_token(b, "c", target) for b in command.blocks]
        return commands

    async def block_report(self, report: wire.BlockReport) -> wire.HeartbeatReply:
        node = self.membership.nodes.get(report.id)
        if not self.leadership.leads():  # the leader gets the same report
            return wire.HeartbeatReply(commands=[])
        # Replicas counted after the listing may have begun cannot be judged by it (a few
        # seconds allow for the report's trip here).
        listed_after = time.time() - max(0.0, report.took) - REPORT_TRANSIT
        try:
            uncounted = await self.blockmap.reconcile(report.id, report.blocks, listed_after)
        except NotLeader:
            return wire.HeartbeatReply(commands=[])
        if node is not None:
            node.wants_report = False
        self.replicator.dirty = True
        commands = await self.delete_orders(report.id)
        if uncounted:  # counted once the node has checked them against their trailers
            commands.append(wire.Command(op="verify", blocks=uncounted))
        return wire.HeartbeatReply(commands=commands)

    async def delete_orders(self, node_id: str) -> list[wire.Command]:
        blocks = await self.blockmap.trash_for(node_id)
        return [wire.Command(op="delete", blocks=blocks)] if blocks else []

    async def suspect(self, report: wire.CorruptReplica, user: auth.User) -> None:
        """A reader found a bad chunk: have the node verify the replica (it is the judge), unless
        the report is one too many (``Suspects``)."""
        if not await self.suspects.report(user.name, report.node, report.block):
            log.debug("report of %s on %s by %s left out", report.block, report.node, user.name)

    def waiting(self) -> tuple[int, int] | None:
        """While in safe mode: (data nodes that reported, data nodes it waits for)."""
        return self.membership.starting(self.namespace.replication)

    async def started(self) -> None:
        """Hold a write while the name node waits for its data nodes (HOLD s at most; the
        write then says why it cannot go on)."""
        if self.waiting() is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._up.wait(), min(HOLD, self.config.safe_mode_wait))

    async def setrep(self, path: str, replication: int, user: auth.User | None = None) -> int:
        if not 1 <= replication <= MAX_REPLICATION:
            raise InvalidArgument(f"replication must be between 1 and {MAX_REPLICATION}")
        files = await self.attributes.setrep(path, replication, user)
        self._heal()
        return files

    async def fsck(self, path: str, *, files: bool) -> wire.FsckReport:
        return await self.blockmap.fsck(
            path,
            {n.id for n in self.membership.live()},
            {n.id for n in self.membership.serving()},
            self.replicator.corrupt,
            files=files,
        )

    async def finish_restore(self) -> wire.Orphans:
        """After a restore, the admin's word: blocks no file names are deleted again, those
        kept since the restore by the next block reports."""
        if self.waiting() is not None:
            raise Conflict(
                "the name node still waits for its data nodes to report after its start: "
                "try again once they have (pydfs admin report)"
            )
        kept = await self.blockmap.finish_restore()
        if kept is None:
            raise Conflict("no restore awaits: blocks that no file names are deleted already")
        self.membership.request_reports()
        log.warning(
            "restore finished: %d block(s) kept since it, that no file names, go", kept.blocks
        )
        return kept

    async def decommission(self, node_id: str, *, undo: bool = False) -> wire.DataNodeState:
        await self.membership.set_admin_state(node_id, "normal" if undo else "decommissioning")
        self._heal()
        return next(s for s in self.membership.states() if s.id == node_id)

    async def maintain_forever(self) -> None:
        """Background upkeep, while this name node leads: replication scans, and expiry of
        abandoned uploads. Every name node keeps up with the admin states others set."""
        last_sweep = last_refresh = 0.0
        if waiting := self.waiting():
            log.info("safe mode: writes wait for %d data node(s) to report", waiting[1])
        safe = waiting is not None
        while True:
            await asyncio.sleep(self.config.replication_interval)
            now = asyncio.get_running_loop().time()
            if now - last_refresh > self.leadership.ttl / 3:
                last_refresh = now
                try:
                    if await self.membership.refresh():
                        self._heal()
                except Unavailable as exc:  # the store is away (a failover): said elsewhere
                    log.debug("reading the data nodes' admin states: %s", exc)
                except Exception:
                    log.exception("reading the data nodes' admin states failed")
            if safe and self.waiting() is None:
                safe = False
                log.info("out of safe mode: %d data node(s) serve", len(self.membership.serving()))
            if not self.leadership.leads():
                continue
            if self.leadership.nudged():
                self.replicator.dirty = True
            try:
                await self.replicator.run_once()
            except NotLeader:
                continue
            except Exception:
                log.exception("replication scan failed")
            if now - last_sweep > min(30.0, self.config.upload_lease / 2):
                last_sweep = now
                try:
                    if expired := await self.uploads.expire():
                        log.info("expired %d abandoned uploads", expired)
                except Exception:
                    log.exception("expiry of abandoned uploads failed")


def run(config: NameNodeConfig) -> None:
    tls = server.server_tls(config.tls_cert, config.tls_key)

    async def main() -> None:
        nn = await NameNode.open(config)
        upkeep = [
            asyncio.create_task(nn.maintain_forever()),
            asyncio.create_task(nn.leadership.run_forever()),
        ]
        if config.backup_every:
            upkeep.append(asyncio.create_task(nn.backups.run_forever()))
        application = app.build(nn)

        async def after_bind(url: str) -> None:
            nn.leadership.url = url
            await nn.leadership.renew()  # so that the lease names this URL at once

        try:
            await server.serve(
                application,
                config.host,
                config.port,
                advertise=config.advertise,
                url_file=config.data_dir / "namenode.url",
                after_bind=after_bind,
                tls=tls,
                front=lambda fallback, limits: fastpath.Front(application, nn, fallback, limits),
                limits=server.Limits.of(config),
            )
        finally:
            for task in upkeep:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await nn.leadership.resign()
            await nn.store.aclose()

    server.run(main())
