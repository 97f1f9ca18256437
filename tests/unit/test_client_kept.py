"""Which statuses a client keeps for reads in one round trip (``Transfer.keep``), and how many."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pydfs import wire
from pydfs.client import transfer
from pydfs.client.transfer import KEPT_SIZE, Transfer

LIVE = [wire.NodeRef("dn-a", "http://127.0.0.1:1"), wire.NodeRef("dn-b", "http://127.0.0.1:2")]
LATER = "later"  # status() makes it a token good for ten minutes from the call


def status(
    path: str, size: int = 10, token: str | None = LATER, blocks: int = 1, nodes: Any = LIVE
) -> Any:
    if token is LATER:  # from now, not from import: the suite may run long before this test
        token = f"r.{int(time.time()) + 600}..mac"
    infos = [wire.BlockInfo(f"b{i}{path}", size, 0, nodes, token) for i in range(blocks)]
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


def test_only_live_replicas_are_kept_and_a_file_with_none_is_not() -> None:
    t = Transfer(object())  # type: ignore[arg-type]
    dead = wire.NodeRef("dn-c", "http://127.0.0.1:3", live=False)
    t.keep(status("/a", nodes=[LIVE[0], dead]))
    t.keep(status("/b", nodes=[dead]))
    assert kept(t) == ["/a"]
    assert [n.id for b in t._kept["/a"][1].blocks or [] for n in b.nodes] == ["dn-a"]


def test_tokens_that_expire_are_not_guessed_with() -> None:
    assert not transfer._expired(status("/a"))
    assert transfer._expired(status("/a", token=f"r.{int(time.time())}..mac"))
    assert transfer._expired(status("/a", token="garbage"))


class Answers:
    """A client whose name node answers every stat with *now*."""

    def __init__(self, now: wire.FileStatus) -> None:
        self.now = now

    async def info(self, path: str, *, read: bool = False) -> wire.FileStatus:
        await asyncio.sleep(0)
        return self.now


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


@pytest.mark.asyncio
async def test_a_guess_that_hangs_is_dropped_for_the_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = status("/f")
    t = Transfer(Answers(now))  # type: ignore[arg-type]
    t.keep(now)
    guesses: list[str] = []

    async def hangs(*args: Any) -> bytes:
        guesses.append("started")
        await asyncio.sleep(3600)  # a node that takes the connection and says nothing
        return b""

    async def from_answer(status: Any, offset: int = 0, length: Any = None) -> AsyncIterator[bytes]:
        assert status is now
        yield b"read from the answer"

    monkeypatch.setattr(t, "_read_kept", hangs)
    monkeypatch.setattr(t, "read", from_answer)
    assert await asyncio.wait_for(collect(t.read_path("/f")), 10) == b"read from the answer"
    assert guesses == ["started"]
    # A status kept longer than KEPT_FOR sends its tokens nowhere: no guess at all.
    monkeypatch.setattr(transfer, "KEPT_FOR", 0.0)
    assert await collect(t.read_path("/f")) == b"read from the answer"
    assert guesses == ["started"]
