"""An open upload's lease is renewed while its writer is slow, and no longer once it ends."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from pydfs import errors
from pydfs.client import transfer


class FakeRpc:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def call(self, method: str, route: str, body: Any = None, **_: Any) -> None:
        self.calls.append(route)
        if len(self.calls) == 1:
            raise errors.Unavailable("the name node is restarting")  # renewing goes on


@pytest.mark.asyncio
async def test_a_slow_upload_renews_its_lease_until_it_ends(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(transfer, "LEASE_RENEWAL", 0.05)
    rpc = FakeRpc()
    keeper = transfer._LeaseKeeper(SimpleNamespace(rpc=rpc), "/uploads/u1")  # type: ignore[arg-type]
    await asyncio.sleep(0.28)
    keeper.stop()
    renewed = len(rpc.calls)
    assert 3 <= renewed <= 6 and set(rpc.calls) == {"/uploads/u1/renew"}
    await asyncio.sleep(0.15)
    assert len(rpc.calls) == renewed  # stopped: no more


@pytest.mark.asyncio
async def test_a_quick_upload_never_renews(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(transfer, "LEASE_RENEWAL", 0.05)
    rpc = FakeRpc()
    keeper = transfer._LeaseKeeper(SimpleNamespace(rpc=rpc), "/uploads/u1")  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    keeper.stop()
    await asyncio.sleep(0.1)
    assert rpc.calls == []
