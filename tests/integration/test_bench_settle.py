"""The benchmark's wait for a deleted file's space (``bench/run.py``, ``settle_deletes``) ends
once that file's blocks are gone, whatever the heartbeats have reported of files written just
before it: it once compared the bytes reported used with a figure read before the stream was
written, which could miss the bytes of W1's file (reported up to 3 s late) and was then never
reached again, so quick mode waited out its 120 s."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from pydfs.cluster import LocalCluster
from tests.conftest import block_path

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench_run(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    import run  # bench/run.py

    monkeypatch.setattr(run, "SETTLE_TIMEOUT", 30.0)  # a hang fails the test, not the CI's time
    yield run
    sys.modules.pop("run", None)


def test_settle_waits_for_the_deleted_blocks_only(
    cluster_factory: Callable[..., LocalCluster], bench_run: ModuleType
) -> None:
    cluster = cluster_factory(2)
    block_size = 1 << 20

    async def go() -> None:
        async with cluster.async_client() as fs:
            # written just before: no heartbeat has reported these bytes yet
            await fs.write_bytes("/before", os.urandom(3 * block_size), block_size=block_size)
            await fs.write_bytes("/stream", os.urandom(4 * block_size), block_size=block_size)
            kept = [b.id for b in (await fs.info("/before")).blocks or []]
            doomed = [b.id for b in (await fs.info("/stream")).blocks or []]
            assert len(kept) == 3 and len(doomed) == 4
            await fs.delete("/stream")
            await bench_run.settle_deletes(cluster, doomed)
            for node in cluster.datanodes:
                assert not any(block_path(node, b).exists() for b in doomed)
                assert all(block_path(node, b).exists() for b in kept)

    asyncio.run(go())
