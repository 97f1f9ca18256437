"""An open upload's lease is renewed while its writer is slow, and no longer once it ends; and
a source whose ``read`` is a coroutine is read as one, whatever class it derives from."""

from __future__ import annotations

import asyncio
import io
from types import SimpleNamespace
from typing import Any

import pytest

from pydfs import errors
from pydfs.client import transfer


class FakeRpc:
    def __init__(self, delay: float = 0.0, until: int = 1) -> None:
        self.calls: list[str] = []
        self.done = 0
        self.delay = delay
        self.until, self.reached = until, asyncio.Event()

    async def call(self, method: str, route: str, body: Any = None, **_: Any) -> None:
        self.calls.append(route)
        if len(self.calls) >= self.until:
            self.reached.set()
        await asyncio.sleep(self.delay)
        self.done += 1
        if len(self.calls) == 1:
            raise errors.Unavailable("the name node is restarting")  # renewing goes on


def keeper(rpc: FakeRpc) -> transfer._LeaseKeeper:
    return transfer._LeaseKeeper(SimpleNamespace(rpc=rpc), "/uploads/u1")  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_slow_upload_renews_its_lease_until_it_ends(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(transfer, "LEASE_RENEWAL", 0.02)
    rpc = FakeRpc(until=3)
    keep = keeper(rpc)
    await asyncio.wait_for(rpc.reached.wait(), 10)  # the first failed: it goes on all the same
    keep.stop()
    renewed = len(rpc.calls)
    assert set(rpc.calls) == {"/uploads/u1/renew"}
    await asyncio.sleep(0.1)
    assert len(rpc.calls) == renewed  # stopped: no more


@pytest.mark.asyncio
async def test_an_upload_that_ends_during_a_renewal_renews_no_more(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(transfer, "LEASE_RENEWAL", 0.02)
    rpc = FakeRpc(delay=0.05)
    keep = keeper(rpc)
    await asyncio.wait_for(rpc.reached.wait(), 10)
    keep.stop()  # the renewal is under way
    await asyncio.sleep(0.15)
    assert (len(rpc.calls), rpc.done) == (1, 0)


@pytest.mark.asyncio
async def test_a_quick_upload_never_renews(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(transfer, "LEASE_RENEWAL", 0.05)
    rpc = FakeRpc()
    keep = keeper(rpc)
    await asyncio.sleep(0)
    keep.stop()
    await asyncio.sleep(0.1)
    assert rpc.calls == []


class AsyncFile(io.RawIOBase):
    """An ``io.IOBase`` whose ``read`` is a coroutine, as fsspec's async files are."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    async def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        piece, self._data = self._data[:n], self._data[n:]
        return piece


def test_a_source_is_read_as_its_read_is() -> None:
    assert transfer._reads_async(AsyncFile(b"x"))  # type: ignore[arg-type]
    assert not transfer._reads_async(io.BytesIO(b"x"))
    assert transfer._remaining(AsyncFile(b"abc")) is None  # type: ignore[arg-type]
    assert transfer._remaining(io.BytesIO(b"abc")) == 3
