"""Which statuses a client keeps for reads in one round trip (``Transfer.keep``), and how many."""

from __future__ import annotations

from typing import Any

import pytest

from pydfs import wire
from pydfs.client import transfer
from pydfs.client.transfer import KEPT_SIZE, Transfer


def status(path: str, size: int = 10, token: str | None = "r.1.x.y", blocks: int = 1) -> Any:
    infos = [wire.BlockInfo(f"b{i}{path}", size, 0, [], token) for i in range(blocks)]
    return wire.FileStatus(path, path[1:], "file", size * blocks, 0.0, 0.0, "u", blocks=infos)


def kept(t: Transfer) -> list[str]:
    return list(t._kept)


def test_only_small_files_with_read_tokens_are_kept() -> None:
    t = Transfer(object())  # type: ignore[arg-type]  # keep() uses nothing of its client
    t.keep(status("/a"))
    t.keep(status("/tokenless", token=None))
    t.keep(status("/big", size=KEPT_SIZE + 1))
    t.keep(status("/empty", size=0, blocks=0))
    t.keep(wire.FileStatus("/d", "d", "dir", 0, 0.0, 0.0, "u"))
    assert kept(t) == ["/a"]
    # An answer without tokens for a kept path (its reader lost r) drops what was kept.
    t.keep(status("/a", token=None))
    assert kept(t) == []


def test_the_most_recent_statuses_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "KEPT_STATUSES", 3)
    t = Transfer(object())  # type: ignore[arg-type]
    for name in ("/a", "/b", "/c"):
        t.keep(status(name))
    t.keep(status("/a"))  # seen again: the most recent now
    t.keep(status("/d"))
    assert kept(t) == ["/c", "/a", "/d"]
