"""Human and JSON output for the CLI; the only module that decides how things look."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

from pydfs import wire


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError


def count(n: int, noun: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(msgspec.to_builtins(obj), indent=2, sort_keys=True) + "\n")


def mode(s: wire.FileStatus) -> str:
    """``drwxr-x--T`` style, as ls shows it."""
    out = [{"dir": "d", "symlink": "l"}.get(s.type, "-")]
    for shift in (6, 3, 0):
        bits = s.mode >> shift
        out += ["r" if bits & 4 else "-", "w" if bits & 2 else "-", "x" if bits & 1 else "-"]
    if s.mode & 0o1000:
        out[9] = "t" if out[9] == "x" else "T"
    return "".join(out)


def listing(entries: list[wire.FileStatus], *, long: bool = False, human: bool = False) -> str:
    """Names (a directory's with a '/'); *long*: with mode, owner, group, size and time, the
    size in bytes, or *human* (``1.5 MiB``)."""
    lines = []
    for e in entries:
        name = e.name + ("/" if e.type == "dir" else "")
        if not long:
            lines.append(name)
            continue
        shown = (size(e.size) if human else str(e.size)) if e.type == "file" else ""
        if e.target is not None:
            name += f" -> {e.target}"
        lines.append(f"{mode(e)}  {e.owner:<8} {e.group:<8} {shown:>10}  {when(e.mtime)}  {name}")
    return "\n".join(lines)


def status(s: wire.FileStatus) -> str:
    lines = [
        f"path:        {s.path}",
        f"type:        {dict(dir='directory', symlink='symbolic link').get(s.type, 'file')}",
        f"owner:       {s.owner}:{s.group}  {mode(s)} ({s.mode:04o})",
        f"modified:    {when(s.mtime)}",
        f"created:     {when(s.ctime)}",
    ]
    if s.target is not None:
        lines[2:2] = [f"target:      {s.target}"]
    if s.type == "file":
        blocks = s.blocks or []
        lines[2:2] = [f"size:        {s.size:,} bytes ({size(s.size)})"]
        lines += [
            f"replication: {s.replication}",
            f"block size:  {size(s.block_size)}",
            f"blocks:      {len(blocks)}",
        ]
        for i, b in enumerate(blocks):
            where = ", ".join(f"{n.id} ({n.url}){'' if n.live else ' [dead]'}" for n in b.nodes)
            lines.append(
                f"  #{i} {b.id}  {b.size:,} bytes  crc32c {b.crc:08x}  on {where or 'no node'}"
            )
    return "\n".join(lines)


def space(s: wire.Space) -> str:
    return (
        f"space available: {size(s.raw_free)} raw free, {size(s.usable)} usable at replication "
        f"{s.replication} ({s.live_nodes} live data nodes, {s.dead_nodes} dead)"
    )


def namenode(n: wire.NameNodeState) -> str:
    role = "leads the background work" if n.leads else f"standby (leader: {n.leader or 'none'})"
    store = "reachable" if n.metadata_up else "UNREACHABLE"
    return (
        f"name node {n.url}: {role}, epoch {n.epoch}, lease {n.lease_left:.1f}s left, "
        f"took the lead {count(n.takeovers, 'time')}; metadata on {n.metadata}, {store}, "
        f"{count(n.metadata_lost, 'connection')} to it lost"
    )


def datanodes(nodes: list[wire.DataNodeState], now: float) -> str:
    lines = [
        f"{'data node':<14}{'state':<8}{'admin':<17}{'used':>10}{'free':>12}{'blocks':>9}  "
        "last heartbeat  address"
    ]
    for n in nodes:
        ago = f"{now - n.last_heartbeat:.1f}s ago" if n.last_heartbeat else "never"
        refused = f"  (its disk refused a block: {n.write_failure})" if n.write_failure else ""
        lines.append(
            f"{n.id:<14}{n.state:<8}{n.admin_state:<17}{size(n.used):>10}{size(n.free):>12}"
            f"{n.blocks:>9}  {ago:<14}  {n.url}{refused}"
        )
    return "\n".join(lines)


def fsck(r: wire.FsckReport) -> str:
    lines = [
        f"{r.path}: {count(r.files, 'file')}, {count(r.blocks, 'block')}",
        f"  healthy:          {r.healthy}",
        f"  under-replicated: {r.under_replicated}",
        f"  missing:          {r.missing}",
        f"  corrupt:          {r.corrupt}",
    ]
    for f in sorted(r.file_details, key=lambda f: f.path):
        state = "MISSING" if f.missing else "UNDER" if f.under_replicated else "OK"
        lines.append(
            f"{state:<8} {f.path}  ({count(f.blocks, 'block')}: {f.healthy} healthy, "
            f"{f.under_replicated} under-replicated, {f.missing} missing)"
        )
    if r.missing_files and not r.file_details:
        lines.append(f"{count(r.missing_files, 'file')} with missing blocks:")
        lines += [f"  {p}" for p in r.missing_paths]
        if r.missing_files > len(r.missing_paths):
            lines.append(f"  ... and {r.missing_files - len(r.missing_paths)} more (--files)")
    if r.restore is not None:
        lines += _restored(r.restore, bool(r.missing_files))
    lines.append(f"The file system under {r.path} is {r.status}.")
    return "\n".join(lines)


def orphans(o: wire.Orphans) -> str:
    measured = f"{size(o.bytes)}" + (f", {o.unmeasured} not measured yet" if o.unmeasured else "")
    return f"{count(o.blocks, 'block')} ({measured}; {count(o.replicas, 'replica')})"


def _restored(o: wire.Orphans, missing: bool) -> list[str]:
    taken = when(o.taken) if o.taken is not None else "an unknown time"
    lines = [
        f"Restored {when(o.restored)} from a backup taken {taken}.",
        f"  Kept: {orphans(o)} that no file names, on the data nodes:",
        "  the data of files written (or replaced) after the backup, never deleted until you",
        "  say so. Those files are not in the namespace: write them again from their source.",
    ]
    if missing:
        lines += [
            "  The files with missing blocks were most likely deleted or replaced after the",
            "  backup, and their blocks with them: remove them (pydfs rm) or write them again.",
        ]
    lines.append(
        "  With every data node up, and sure: pydfs fsck --delete-orphans (lets the kept go)"
    )
    return lines


def duration(seconds: float) -> str:
    s = int(max(0.0, seconds))
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def uploads(listing: wire.UploadList) -> str:
    lines = [
        f"{'upload':<10}{'user':<12}{'age':>8}{'expires':>9}{'blocks':>8}{'granted':>12}  path"
    ]
    for u in listing.uploads:
        lines.append(
            f"{u.id[:8]:<10}{u.user:<12}{duration(u.age):>8}{duration(u.expires_in):>9}"
            f"{u.blocks:>8}{size(u.granted):>12}  {u.path or '(batch lease, not named yet)'}"
        )
    users = len({u.user for u in listing.uploads})
    lines.append(f"{len(listing.uploads)} open upload(s) by {users} user(s)")
    return "\n".join(lines)


PROGRESS_MIN = 4 * 1024 * 1024  # smaller transfers finish before a bar would help


@contextmanager
def progress(label: str, total: int | None, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A transfer progress bar on stderr (bytes, rate, time left), or a no-op callback when
    stderr is no terminal, output is quiet or JSON, or the transfer is small."""
    if not enabled or not sys.stderr.isatty() or (total is not None and total < PROGRESS_MIN):
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class BinaryRate(ProgressColumn):
        """MiB/s, as the sizes beside it are in MiB (rich's own rate is in MB/s)."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(
                "?" if speed is None else f"{size(int(speed))}/s", style="progress.data.speed"
            )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        BinaryRate(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
