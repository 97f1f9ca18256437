"""The PostgreSQL primary lost under Patroni while clients write: writes resume once the
standby is promoted, and every write acknowledged before, during or after reads back exactly.

The name node connects with a multi-host URL and ``target_session_attrs=read-write``; the
primary's Patroni and PostgreSQL are SIGKILLed together, as when its machine dies, so that the
standby is promoted only when the leader key expires (``tests.patroni.TTL``)."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pydfs import Client, InsufficientNodes, Unavailable
from pydfs.cluster import LocalCluster
from tests.conftest import BLOCK_SIZE, make_cluster, need
from tests.patroni import TTL, PatroniCluster, installed

pytestmark = pytest.mark.fault

RESUME_BOUND = 90.0  # seconds: catches a hang, not a slow failover (measured: see the README)


@pytest.fixture
def patroni(postgres_bin: Path) -> Iterator[PatroniCluster]:
    if missing := installed():
        need(f"{missing} (apt-get install patroni etcd-server)")
    with PatroniCluster(postgres_bin) as pg:
        yield pg


@dataclass
class Workload:
    """Writes files, and now and then a directory, one after another, until stopped; keeps
    what was acknowledged, and when. A write refused as unavailable is not sent again under
    its name (it may have been applied): the next write has a new one."""

    fs: Client
    stop: threading.Event = field(default_factory=threading.Event)
    files: dict[str, bytes] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)
    acked: list[tuple[float, float]] = field(default_factory=list)  # each write: sent, acked
    refused: list[tuple[float, str]] = field(default_factory=list)
    failed: list[BaseException] = field(default_factory=list)  # anything else: a defect

    def run(self) -> None:
        rng = random.Random(16)
        i = 0
        while not self.stop.is_set():
            i += 1
            sent = time.monotonic()
            try:
                if i % 5 == 0:
                    self.fs.mkdir(f"/ha/d{i}")
                    self.dirs.append(f"/ha/d{i}")
                else:
                    data = os.urandom(rng.choice([1, 1000, BLOCK_SIZE + 7]))
                    self.fs.write_bytes(f"/ha/f{i}", data)
                    self.files[f"/ha/f{i}"] = data
                self.acked.append((sent, time.monotonic()))
            # The SDK retries a refused (503) write by itself for up to its failover_timeout
            # (30 s); past that, the workload goes on with its next write.
            except (Unavailable, InsufficientNodes) as exc:
                self.refused.append((time.monotonic(), f"{type(exc).__name__}: {exc}"))
                time.sleep(0.2)
            except BaseException as exc:
                self.failed.append(exc)
                return

    def sent_after(self, moment: float) -> list[float]:
        """When each write sent after *moment* was acknowledged."""
        return [acked for sent, acked in self.acked if sent > moment]

    def resumed(self, killed: float) -> float | None:
        """Seconds from *killed* to the first acknowledgement of a write sent after it (the
        SDK holds a write the database cannot take yet, and sends it again, until it can)."""
        after = self.sent_after(killed)
        return after[0] - killed if after else None


def test_writes_resume_after_the_primary_is_lost_and_nothing_acknowledged_is(
    patroni: PatroniCluster, tmp_path: Path
) -> None:
    cluster = make_cluster(tmp_path / "cluster", metadata=patroni.url())
    with cluster, cluster.client() as fs:
        fs.mkdir("/ha")
        work = Workload(fs)
        worker = threading.Thread(target=work.run)
        worker.start()
        try:
            LocalCluster.wait_until(lambda: len(work.acked) >= 20, 30, "writes before")
            primary = patroni.primary()
            assert primary is not None
            killed = time.monotonic()
            primary.kill()
            LocalCluster.wait_until(
                lambda: work.resumed(killed) is not None or bool(work.failed),
                RESUME_BOUND,
                "a write acknowledged after the primary was lost",
            )
            assert not work.failed, work.failed
            resumed = work.resumed(killed)
            assert resumed is not None
            LocalCluster.wait_until(
                lambda: len(work.sent_after(killed + resumed)) >= 20, 30, "writes after"
            )
        finally:
            work.stop.set()
            worker.join(60)
        assert not work.failed, work.failed
        promoted = patroni.primary()
        assert promoted is not None and promoted is not primary
        print(
            f"\nwrites resumed {resumed:.1f} s after the primary was lost (ttl {TTL} s); "
            f"{len(work.refused)} writes refused meanwhile, {len(work.acked)} acknowledged"
        )
        assert {e.split(":")[0] for _, e in work.refused} <= {"Unavailable", "Timeout"}
        for path, data in work.files.items():
            assert fs.read_bytes(path) == data, path
        for path in work.dirs:
            assert fs.info(path).type == "dir", path
