"""``pydfs namenode``, ``pydfs datanode`` and ``pydfs cluster up``: the server side of the CLI."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydfs import config
from pydfs.errors import Conflict, InvalidArgument, NotFound, PydfsError

DEFAULT_CLUSTER_DIR = (
    Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "pydfs" / "cluster"
)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    # not required by argparse: `pydfs namenode reset-admin --data-dir D` gives it after the word
    common.add_argument("--data-dir", type=Path, help="where this node keeps its state (needed)")
    common.add_argument("--host", help="address to bind (default 127.0.0.1)")
    common.add_argument("--port", type=int, help="port to bind (0: any free port)")
    common.add_argument("--advertise", help="URL other machines use to reach this node")
    common.add_argument("--config", help="TOML file with [namenode] / [datanode] settings")
    common.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    common.add_argument("--tls-cert", type=Path, help="PEM certificate: serve HTTPS")
    common.add_argument("--tls-key", type=Path, help="the certificate's private key")
    common.add_argument("--tls-ca", type=Path, help="CA bundle that verifies the other nodes")

    nn = sub.add_parser("namenode", parents=[common], help="run the name node")
    nn.add_argument(
        "--metadata",
        metavar="URL",
        help="where the metadata lives: sqlite (default, in the data directory) or "
        "postgresql://user:password@host/database",
    )
    nn.add_argument("--replication", type=int, help="default replicas per block (2)")
    nn.add_argument("--block-size", type=int, help="default block size in bytes (64 MiB)")
    nn.add_argument("--dead-after", type=float, help="seconds of silence before a node is dead")
    nn.add_argument("--replication-interval", type=float, help="seconds between replication scans")
    nn.add_argument("--max-open-uploads", type=int, help="uploads one user may have open (256)")
    nn.add_argument("--upload-lease", type=float, help="seconds an idle upload stays open (600)")
    nn.add_argument("--upload-lifetime", type=float, help="seconds an upload may stay open")
    nn.add_argument("--safe-mode-wait", type=float, help="seconds writes may wait for data nodes")
    nn.add_argument(
        "--leader-lease",
        type=float,
        help="seconds the leading name node's lease runs unrenewed (10): with several name "
        "nodes, the lead moves this long after the leader dies",
    )
    nn.add_argument(
        "--secret-file",
        type=Path,
        help="the cluster secret (default: in the data directory; name nodes sharing one "
        "database share it too)",
    )
    nn.set_defaults(run=run_namenode)
    nn.add_argument(
        "--backup-every", type=float, help="seconds between metadata backups kept (0: none)"
    )
    nn.add_argument("--backup-dir", type=Path, help="where they are kept (DATA_DIR/backups)")
    nn.add_argument("--backup-keep", type=int, help="how many backups are kept (7)")
    nn_sub = nn.add_subparsers(dest="namenode_command", metavar="{reset-admin,restore}")
    reset = nn_sub.add_parser(
        "reset-admin",
        help="recover when no admin token works (run it with the name node stopped)",
        description="Make the user 'admin' an administrator again, with a new token written "
        "to DATA_DIR/admin.token; the name node must be stopped. Other users are untouched.",
    )
    # before or after the word alike: a default here would hide a value given before it
    reset.add_argument(
        "--data-dir", type=Path, default=argparse.SUPPRESS, help="the name node's data directory"
    )
    reset.add_argument(
        "--metadata",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="the name node's --metadata, if not sqlite",
    )
    reset.set_defaults(run=run_reset_admin)
    restore = nn_sub.add_parser(
        "restore",
        help="put a metadata backup in place (run it with the name node stopped)",
        description="Check BACKUP (made by `pydfs admin backup`: SQLite's integrity check, a "
        "schema this pydfs knows) and make it the name node's metadata; the name node must be "
        "stopped. The metadata it replaces is kept beside it "
        "(namespace.sqlite3.before-restore-TIME), never deleted. Once started, the name node "
        "deletes no block that no file names (the data of files written after the backup) "
        "until an admin runs `pydfs fsck --delete-orphans`; `pydfs fsck` lists them, and the "
        "files whose blocks are gone (deleted after the backup). Users and tokens are as they "
        "were at the backup.",
    )
    restore.add_argument("backup", type=Path, help="the backup file")
    restore.add_argument(
        "--data-dir", type=Path, default=argparse.SUPPRESS, help="the name node's data directory"
    )
    restore.set_defaults(run=run_restore)

    dn = sub.add_parser("datanode", parents=[common], help="run a data node")
    dn.add_argument(
        "--namenode", metavar="URL[,URL...]", help="the name node's URL (every one, if several)"
    )
    dn.add_argument("--capacity", type=int, help="bytes this node may use (default: the disk)")
    dn.add_argument("--heartbeat-interval", type=float, help="seconds between heartbeats")
    dn.add_argument("--scan-interval", type=float, help="seconds between scrub passes")
    dn.add_argument("--scan-rate", type=int, help="bytes/s the scrubber reads")
    dn.add_argument("--stall-timeout", type=float, help="seconds before a silent peer is dropped")
    dn.add_argument("--secret-file", type=Path, help="a copy of the name node's cluster.secret")
    dn.set_defaults(run=run_datanode)

    cl = sub.add_parser("cluster", help="run a whole local cluster")
    cl_sub = cl.add_subparsers(dest="cluster_command", required=True)
    up = cl_sub.add_parser("up", help="start a name node and data nodes on 127.0.0.1")
    up.add_argument("--datanodes", type=int, default=2, help="how many data nodes (2)")
    up.add_argument(
        "--namenodes", type=int, default=1, help="how many name nodes (1; more need PostgreSQL)"
    )
    up.add_argument(
        "--metadata",
        default="sqlite",
        metavar="sqlite|postgres|URL",
        help="sqlite (default), postgres (a PostgreSQL of the cluster's own, in its directory), "
        "or the postgresql:// URL of an existing database",
    )
    up.add_argument("--dir", type=Path, default=DEFAULT_CLUSTER_DIR, help="cluster state directory")
    up.add_argument(
        "--port",
        type=int,
        help="name node port (default: the one this directory's cluster first got, at first "
        f"{config.DEFAULT_NAMENODE_PORT}; another if it is taken, said loudly)",
    )
    up.add_argument("--no-check", action="store_true", help="skip the write/read self-check")
    up.add_argument("--tls", action="store_true", help="HTTPS everywhere, with a local CA")
    up.set_defaults(run=run_cluster_up)


def _flags(args: argparse.Namespace, names: list[str]) -> dict[str, object]:
    return {n: getattr(args, n, None) for n in names}


_COMMON = ["data_dir", "host", "port", "advertise", "log_level", "tls_cert", "tls_key", "tls_ca"]


def _need_data_dir(args: argparse.Namespace) -> None:
    if args.data_dir is None:
        raise InvalidArgument(f"pydfs {args.command} needs --data-dir DIR")


def run_namenode(args: argparse.Namespace) -> int:
    from pydfs import log, namenode

    _need_data_dir(args)
    flags = _flags(
        args,
        [
            *_COMMON,
            "metadata",
            "replication",
            "block_size",
            "dead_after",
            "replication_interval",
            "max_open_uploads",
            "upload_lease",
            "upload_lifetime",
            "safe_mode_wait",
            "secret_file",
            "leader_lease",
            "backup_every",
            "backup_dir",
            "backup_keep",
        ],
    )
    cfg = config.load(config.NameNodeConfig, "namenode", flags, args.config)
    log.setup("namenode", cfg.log_level)
    namenode.run(cfg)
    return 0


def run_reset_admin(args: argparse.Namespace) -> int:
    import asyncio

    from pydfs.namenode import auth
    from pydfs.namenode.store import sqlite_url

    _need_data_dir(args)
    data_dir: Path = args.data_dir
    database = data_dir / "namespace.sqlite3"
    metadata = args.metadata or "sqlite"
    if metadata == "sqlite" and not database.exists():
        raise InvalidArgument(f"{data_dir} holds no name node (no {database.name})")
    with _stopped(data_dir):
        url = sqlite_url(database) if metadata == "sqlite" else metadata
        done = asyncio.run(_reset_admin(url, data_dir / auth.TOKEN_FILE))
    print(f"{done}; its token is in {data_dir / auth.TOKEN_FILE}")
    print("start the name node, then: pydfs login --token-file " + str(data_dir / auth.TOKEN_FILE))
    return 0


@contextmanager
def _stopped(data_dir: Path) -> Iterator[None]:
    """Hold the data directory of a name node that must not run meanwhile."""
    from pydfs import server

    try:
        lock = server.lock_data_dir(data_dir, "namenode")
    except PydfsError:
        raise Conflict(f"a name node is running on {data_dir}: stop it first") from None
    try:
        yield
    finally:
        os.close(lock)


def run_restore(args: argparse.Namespace) -> int:
    from pydfs.namenode.store.sqlite import backup

    _need_data_dir(args)
    data_dir: Path = args.data_dir
    if not data_dir.is_dir():
        raise NotFound(f"no directory {data_dir}")
    if not args.backup.is_file():
        raise NotFound(f"no backup file {args.backup}")
    with _stopped(data_dir):
        checked, aside = backup.install(args.backup, data_dir / "namespace.sqlite3")
    taken = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(checked.taken or 0))
    print(
        f"restored {args.backup} (taken {taken if checked.taken else 'at an unknown time'}, "
        f"{checked.files} files)"
    )
    if aside is not None:
        print(f"the metadata it replaces is kept in {aside}")
    print(
        "start the name node: it keeps the blocks no file names (files written after the "
        "backup);\n`pydfs fsck` lists them and the files whose blocks are gone; "
        "`pydfs fsck --delete-orphans` lets them go"
    )
    return 0


async def _reset_admin(url: str, token_file: Path) -> str:
    from pydfs.namenode import auth
    from pydfs.namenode.store import open_store

    store = open_store(url)
    try:
        return await auth.Users(store).reset_admin(token_file)
    finally:
        await store.aclose()


def run_datanode(args: argparse.Namespace) -> int:
    from pydfs import datanode, log

    _need_data_dir(args)
    flags = _flags(
        args,
        [
            *_COMMON,
            "namenode",
            "capacity",
            "heartbeat_interval",
            "scan_interval",
            "scan_rate",
            "stall_timeout",
            "secret_file",
        ],
    )
    cfg = config.load(config.DataNodeConfig, "datanode", flags, args.config)
    log.setup("datanode", cfg.log_level)
    datanode.run(cfg)
    return 0


def run_cluster_up(args: argparse.Namespace) -> int:
    from pydfs.cluster import LocalCluster

    if args.datanodes < 1:
        raise InvalidArgument("a cluster needs at least one data node")
    metadata: str = args.metadata
    if metadata not in ("sqlite", "postgres") and not metadata.startswith(
        ("postgresql://", "postgres://")
    ):
        raise InvalidArgument(
            f"--metadata {metadata!r}: give sqlite, postgres, or a postgresql:// URL"
        )
    root: Path = args.dir.expanduser().resolve()
    cluster = LocalCluster(
        root,
        args.datanodes,
        namenode_port=args.port,
        tls=args.tls,
        metadata=None if metadata == "sqlite" else metadata,
        namenodes=args.namenodes,
    )
    signal.signal(signal.SIGTERM, _interrupt)  # stop as cleanly as on Ctrl-C
    print(f"starting pydfs in {root} ...", flush=True)
    cluster.start()
    for note in cluster.notes:
        print(f"\nWARNING: {note}\n", file=sys.stderr, flush=True)
    try:
        cfg_path = config.ClientConfig(
            namenode=",".join(cluster.urls),
            user="admin",
            token=cluster.admin_token,
            ca=str(cluster.ca) if cluster.ca else None,
        ).write()
        for node in cluster.namenodes:
            print(f"{node.name:<11} {node.url}  (pid {node.pid}, data {node.data_dir})")
        if cluster.postgres is not None:
            print(f"PostgreSQL  {cluster.postgres.url('pydfs')}  (data {cluster.postgres.data})")
        elif metadata != "sqlite":
            from pydfs.namenode.store.postgres import redacted

            print(f"metadata    {redacted(metadata)}")
        print(f"web UI      {cluster.url}/  (sign in with the token in {cfg_path})")
        for node in cluster.datanodes:
            print(f"{node.name}  {node.url}  (pid {node.pid}, data {node.data_dir})")
        print(f"client configured as user admin in {cfg_path}")
        if cluster.ca:
            print(f"TLS on: certificates from the local CA {cluster.ca}")
        if not args.no_check:
            _self_check(cluster.url, cluster.admin_token, cluster.ca)
        print("\nIn another shell, try:  pydfs ls /   pydfs put FILE   pydfs stat FILE")
        print("Add a user:  pydfs admin user add NAME   (they then run: pydfs login)")
        print("Press Ctrl-C to stop the cluster.", flush=True)
        while True:
            time.sleep(1.0)
            for node in [*cluster.namenodes, *cluster.datanodes]:
                if node.popen is not None and not node.running:
                    print(f"warning: {node.name} exited; see {node.log_path}", file=sys.stderr)
                    node.popen = None
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping ...", flush=True)
        cluster.stop()
        print("stopped; files are kept in", root)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _self_check(url: str, token: str, ca: Path | None) -> None:
    """Show the cluster working: write a multi-block file, read it back, delete it."""
    import hashlib

    from pydfs.cli import render
    from pydfs.client import Client

    payload = os.urandom(3 * 256 * 1024 + 12345)
    path = "/.pydfs-self-check"
    with Client(url, token=token, ca=ca) as fs:
        status = fs.write_bytes(path, payload, block_size=256 * 1024)
        back = fs.read_bytes(path)
        fs.delete(path)
    nodes = sorted({n.id for b in status.blocks or [] for n in b.nodes})
    same = hashlib.sha256(back).digest() == hashlib.sha256(payload).digest()
    print(
        f"self-check: wrote {render.size(len(payload))} as {len(status.blocks or [])} blocks "
        f"on {', '.join(nodes)}, read it back {'identical' if same else 'DIFFERENT'}"
    )
    if not same:
        raise SystemExit("self-check failed: the data read back differs")
