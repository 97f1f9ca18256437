"""Mounting: check the arguments, the user and the directory, then serve FUSE requests until
``fusermount3 -u`` (or, in the foreground, Ctrl-C or SIGTERM) unmounts.

Without ``--foreground`` the command starts a copy of itself in the foreground, in a session of
its own with its output in a log file, and returns once the directory is mounted (or with that
copy's error, if it could not mount). A directory that is a mount point already is refused,
so that what appears there is this mount.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pydfs import paths
from pydfs.config import client_config_path
from pydfs.errors import AlreadyExists, InvalidArgument, NotADirectory, Unavailable

READY_TIMEOUT = 30.0  # seconds the background mount may take to appear


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "dir",
        metavar="DIR",
        help="the pydfs directory to mount (default /); given alone, the mount point",
    )
    p.add_argument(
        "mountpoint", nargs="?", metavar="MOUNTPOINT", help="an existing local directory"
    )
    p.add_argument(
        "--namenode",
        default=argparse.SUPPRESS,
        help="name node URL, or URL1,URL2 (as before the command)",
    )
    p.add_argument(
        "-f", "--foreground", action="store_true", help="stay in the foreground (Ctrl-C unmounts)"
    )
    p.add_argument(
        "--ttl",
        type=float,
        default=1.0,
        help="seconds attributes and directory entries are cached (default 1): how soon "
        "changes made elsewhere show",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=20.0,
        help="seconds a name node call or a silent data node may take before the "
        "system call fails with EIO (default 20)",
    )
    p.add_argument(
        "--read-ahead",
        type=int,
        default=16,
        metavar="MIB",
        help="MiB fetched ahead of a sequential reader (default 16)",
    )
    p.add_argument(
        "--spill-dir", help="where files changed in place are kept until closed (default $TMPDIR)"
    )
    p.add_argument("--log", help="the background mount's log file (default: beside the config)")


def run(args: argparse.Namespace) -> int:
    remote, mountpoint = (args.dir, args.mountpoint) if args.mountpoint else ("/", args.dir)
    remote = paths.normalize(remote)
    mountpoint = os.path.abspath(mountpoint)
    if not os.path.isdir(mountpoint):
        raise NotADirectory(f"{mountpoint}: no such local directory to mount on")
    if os.path.ismount(mountpoint):
        raise AlreadyExists(f"{mountpoint} is already a mount point (fusermount3 -u unmounts it)")
    if args.ttl < 0 or args.timeout <= 0 or args.read_ahead < 0:
        raise InvalidArgument("--ttl, --timeout and --read-ahead take positive numbers")
    try:
        import pyfuse3  # noqa: F401
    except ImportError:
        raise InvalidArgument(
            "pydfs mount needs pyfuse3: pip install 'pydfs[mount]' "
            "(with FUSE 3: apt-get install fuse3 libfuse3-dev pkg-config)"
        ) from None
    if not os.path.exists("/dev/fuse"):
        raise Unavailable("FUSE is not available here (no /dev/fuse)")
    if args.foreground:
        return _foreground(args, remote, mountpoint)
    return _background(args, mountpoint)


def _foreground(args: argparse.Namespace, remote: str, mountpoint: str) -> int:
    import pyfuse3.asyncio

    from pydfs import server

    pyfuse3.asyncio.enable()
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s pydfs mount: %(message)s",
    )
    server.run(_serve(args, remote, mountpoint))
    return 0


async def _serve(args: argparse.Namespace, remote: str, mountpoint: str) -> None:
    import pyfuse3

    from pydfs.client import AsyncClient
    from pydfs.mount.identity import Identity
    from pydfs.mount.operations import Operations, Options

    client = AsyncClient(
        getattr(args, "namenode", None), stall_timeout=args.timeout, call_timeout=args.timeout
    )
    try:
        async with asyncio.timeout(args.timeout):
            me = await client.whoami()
            top = await client.info(remote)
        if top.type != "dir":
            raise NotADirectory(f"{remote} is not a directory")
        options = Options(args.ttl, args.read_ahead << 20, args.spill_dir)
        ops = Operations(client, Identity(me), remote, options)
        # No default_permissions: the name node decides every access, as the mount's user;
        # the kernel could only compare modes with local ids that stand for pydfs names.
        try:
            pyfuse3.init(ops, mountpoint, {"fsname=pydfs", "subtype=pydfs"})
        except RuntimeError as exc:
            raise Unavailable(f"cannot mount on {mountpoint}: {exc}") from None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, pyfuse3.terminate)
        try:
            await pyfuse3.main()
        finally:
            await ops.close()
            pyfuse3.close(unmount=True)
    finally:
        await client.close()


def _background(args: argparse.Namespace, mountpoint: str) -> int:
    log = Path(args.log) if args.log else client_config_path().with_name("mount.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    start = log.stat().st_size if log.exists() else 0
    argv = [sys.executable, "-m", "pydfs", *sys.argv[1:], "--foreground"]
    with open(log, "ab") as out:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    deadline = time.monotonic() + READY_TIMEOUT
    while child.poll() is not None or not os.path.ismount(mountpoint):
        if child.poll() is not None:
            with open(log, "rb") as f:
                f.seek(start)
                said = f.read().decode(errors="replace").strip().splitlines()
            reason = said[-1].removeprefix("pydfs: error: ") if said else "no reason given"
            raise Unavailable(f"mount failed: {reason}")
        if time.monotonic() > deadline:
            child.terminate()
            raise Unavailable(f"{mountpoint} was not mounted within {READY_TIMEOUT:.0f} s")
        time.sleep(0.05)
    if not args.quiet:
        print(f"mounted on {mountpoint} (pid {child.pid}, log {log}); unmount: fusermount3 -u")
    return 0
