"""The name node: the namespace, the data node registry and upload leases behind one HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pydfs import server, tokens, wire
from pydfs.config import NameNodeConfig
from pydfs.errors import InvalidArgument, PermissionDenied
from pydfs.namenode import app, auth, fastpath
from pydfs.namenode.membership import Membership
from pydfs.namenode.namespace import Namespace
from pydfs.namenode.replication import Replicator
from pydfs.namenode.store import Store
from pydfs.namenode.uploads import MAX_REPLICATION, Uploads

log = logging.getLogger("pydfs.namenode")

__all__ = ["NameNode", "run"]


class NameNode:
    def __init__(self, config: NameNodeConfig) -> None:
        self.config = config
        self._lock = server.lock_data_dir(config.data_dir, "namenode")
        self.secret = tokens.load_or_create_secret(
            config.secret_file or config.data_dir / tokens.SECRET_FILE
        )
        self.store: Store = Store(config.data_dir / "namespace.sqlite3")
        self.membership: Membership = Membership(self.store, dead_after=config.dead_after)
        self.namespace: Namespace = Namespace(
            self.store,
            self.membership,
            replication=config.replication,
            block_size=config.block_size,
            umask=config.umask,
        )
        self.namespace.read_token = lambda block: self.block_token(block, "r")
        self.users: auth.Users = auth.Users(self.store)
        if self.users.bootstrap(config.data_dir / auth.TOKEN_FILE):
            log.warning(
                "created user %r; its token is in %s",
                auth.BOOTSTRAP_ADMIN,
                config.data_dir / auth.TOKEN_FILE,
            )
        self._layout()
        self.uploads: Uploads = Uploads(
            self.namespace,
            self.membership,
            lease=config.upload_lease,
            write_token=lambda block: self.block_token(block, "w"),
        )
        self.replicator: Replicator = Replicator(
            self.namespace,
            self.membership,
            max_copies_per_node=config.max_copies_per_node,
            copy_timeout=config.copy_timeout,
        )
        self._verify: dict[str, list[str]] = {}  # node → replicas a reader found bad
        self.uploads.on_commit = self._committed

    def block_token(self, block_id: str, mode: tokens.Mode) -> str:
        return tokens.block_token(self.secret, block_id, mode, self.config.block_token_lifetime)

    def _layout(self) -> None:
        """What a fresh or just initialised file system holds: /tmp (1777) and every home."""
        if self.namespace.lookup("/tmp") is None:
            self.namespace.mkdir("/tmp", mode=0o1777)
        for user in self.users.all():
            self.namespace.make_home(user.name)

    # --- users ----------------------------------------------------------------------------

    def add_user(self, spec: wire.NewUser) -> wire.UserToken:
        token = self.users.add(spec.name, admin=spec.admin, groups=spec.groups)
        self.namespace.make_home(spec.name)
        return wire.UserToken(spec.name, token)

    def format(self, user: auth.User) -> wire.FormatReply:
        if not user.admin:
            raise PermissionDenied("only an admin may initialize the file system")
        files, blocks = self.namespace.format()
        self.membership.request_reports()  # so that blocks the namespace never knew go too
        self._layout()
        return wire.FormatReply(files, blocks, self.membership.space(self.namespace.replication))

    def _committed(self, blocks: list[wire.StoredBlock], replication: int) -> None:
        """A write whose pipeline lost a node committed short blocks: have them healed."""
        if any(len(b.nodes) < replication for b in blocks):
            self.replicator.dirty = True

    def heartbeat(self, hb: wire.Heartbeat) -> wire.HeartbeatReply:
        """Take in what a data node reports; answer with the work it is to do."""
        node, restarted = self.membership.heartbeat(hb)
        if restarted:
            self.replicator.forget_orders(node.id)  # a new process knows nothing of them
        self.replicator.received(node.id, hb.received, self.uploads.in_flight())
        self.replicator.corrupt_replicas(node.id, hb.corrupt)
        if hb.failed_copies:
            self.replicator.copy_failed(node.id, hb.failed_copies)
        commands = self.delete_orders(node.id) + self.replicator.orders_for(node.id)
        for command in commands:
            if command.op == "replicate":
                command.tokens = [self.block_token(b, "w") for b in command.blocks]
        if verify := self._verify.pop(node.id, None):
            commands.append(wire.Command(op="verify", blocks=verify))
        return wire.HeartbeatReply(commands=commands, send_report=node.wants_report)

    def block_report(self, report: wire.BlockReport) -> wire.HeartbeatReply:
        self.namespace.reconcile(report.id, report.blocks, self.uploads.in_flight())
        node = self.membership.nodes.get(report.id)
        if node is not None:
            node.wants_report = False
        self.replicator.dirty = True
        return wire.HeartbeatReply(commands=self.delete_orders(report.id))

    def delete_orders(self, node_id: str) -> list[wire.Command]:
        blocks = self.namespace.trash_for(node_id)
        return [wire.Command(op="delete", blocks=blocks)] if blocks else []

    def suspect(self, report: wire.CorruptReplica) -> None:
        """A reader found a bad chunk: have the node verify the replica (it is the judge)."""
        if report.node in self.membership.nodes:
            self._verify.setdefault(report.node, []).append(report.block)

    def setrep(self, path: str, replication: int, user: auth.User | None = None) -> int:
        if not 1 <= replication <= MAX_REPLICATION:
            raise InvalidArgument(f"replication must be between 1 and {MAX_REPLICATION}")
        files = self.namespace.setrep(path, replication, user)
        self.replicator.dirty = True
        return files

    def fsck(self, path: str, *, files: bool) -> wire.FsckReport:
        return self.namespace.fsck(
            path,
            {n.id for n in self.membership.live()},
            {n.id for n in self.membership.serving()},
            self.replicator.corrupt,
            files=files,
        )

    def decommission(self, node_id: str, *, undo: bool = False) -> wire.DataNodeState:
        self.membership.set_admin_state(node_id, "normal" if undo else "decommissioning")
        self.replicator.dirty = True
        return next(s for s in self.membership.states() if s.id == node_id)

    async def maintain_forever(self) -> None:
        """Background upkeep: replication scans, and expiry of abandoned uploads."""
        last_sweep = 0.0
        while True:
            await asyncio.sleep(self.config.replication_interval)
            try:
                self.replicator.run_once()
            except Exception:
                log.exception("replication scan failed")
            now = asyncio.get_running_loop().time()
            if now - last_sweep > 30:
                last_sweep = now
                if expired := self.uploads.expire():
                    log.info("expired %d abandoned uploads", expired)


def run(config: NameNodeConfig) -> None:
    tls = server.server_tls(config.tls_cert, config.tls_key)

    async def main() -> None:
        nn = NameNode(config)
        sweeper = asyncio.create_task(nn.maintain_forever())
        application = app.build(nn)
        try:
            await server.serve(
                application,
                config.host,
                config.port,
                advertise=config.advertise,
                url_file=config.data_dir / "namenode.url",
                tls=tls,
                front=lambda fallback, limits: fastpath.Front(application, nn, fallback, limits),
                limits=server.Limits.of(config),
            )
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            nn.store.close()

    server.run(main())
