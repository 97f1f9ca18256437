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


def test_a_guess_is_trusted_only_where_its_nodes_are_live_at_the_same_address() -> None:
    def located(*nodes: tuple[str, str, bool]) -> Any:
        refs = [wire.NodeRef(i, url, live) for i, url, live in nodes]
        block = wire.BlockInfo("b", 10, 0, refs, "r.1.x.y")
        return wire.FileStatus("/f", "f", "file", 10, 0.0, 0.0, "u", blocks=[block])

    kept = located(("a", "http://a:1", True), ("b", "http://b:1", True))
    assert transfer._nodes_as_before(
        kept, located(("b", "http://b:1", True), ("a", "http://a:1", True))
    )
    assert not transfer._nodes_as_before(
        kept, located(("a", "http://a:2", True), ("b", "http://b:1", True))
    )
    assert not transfer._nodes_as_before(
        kept, located(("a", "http://a:1", True), ("b", "http://b:1", False))
    )
    assert not transfer._nodes_as_before(kept, located(("a", "http://a:1", True)))


def test_a_written_file_is_kept_with_the_tokens_its_blocks_were_written_with() -> None:
    status = wire.FileStatus(
        "/f",
        "f",
        "file",
        20,
        0.0,
        0.0,
        "u",
        blocks=[wire.BlockInfo("b1", 10, 0), wire.BlockInfo("b2", 10, 0)],
    )
    both = transfer._with_tokens(status, {"b1": "w.1", "b2": "w.2"})
    assert [b.token for b in both.blocks or []] == ["w.1", "w.2"]
    assert status.blocks and status.blocks[0].token is None  # what the caller gets is unchanged
    one = transfer._with_tokens(status, {"b2": "w.2"})  # b1 kept from the version before
    t = Transfer(object())  # type: ignore[arg-type]
    t.keep(one)
    assert kept(t) == []
