"""Human and JSON output for the CLI; the only module that decides how things look."""

from __future__ import annotations

import json
import sys
import time
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


def when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(msgspec.to_builtins(obj), indent=2, sort_keys=True) + "\n")


def listing(entries: list[wire.FileStatus]) -> str:
    lines = []
    for e in entries:
        kind = "d" if e.type == "dir" else "-"
        shown = size(e.size) if e.type == "file" else ""
        name = e.name + ("/" if e.type == "dir" else "")
        lines.append(f"{kind}  {shown:>10}  {when(e.mtime)}  {e.owner:<10}  {name}")
    return "\n".join(lines)


def status(s: wire.FileStatus) -> str:
    lines = [
        f"path:        {s.path}",
        f"type:        {'directory' if s.type == 'dir' else 'file'}",
        f"owner:       {s.owner}",
        f"modified:    {when(s.mtime)}",
        f"created:     {when(s.ctime)}",
    ]
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
