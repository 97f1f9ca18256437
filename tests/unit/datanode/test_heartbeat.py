"""Heartbeats to several name nodes: one incarnation per process, and news for a name node that
does not answer is kept only so long (then a full block report replaces it)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pydfs import errors, wire
from pydfs.datanode import heartbeat
from pydfs.datanode.heartbeat import Heartbeats


class FakeNameNode:
    """Records the heartbeats and reports it is sent; fails them while *down*."""

    def __init__(self, url: str) -> None:
        self.base_url = url
        self.down = False
        self.heartbeats: list[wire.Heartbeat] = []
        self.reports = 0

    async def call(self, method: str, route: str, body: Any, *, reply: Any) -> Any:
        if self.down:
            raise errors.Unavailable(f"cannot reach {self.base_url}")
        if route == "/datanodes/report":
            self.reports += 1
        else:
            self.heartbeats.append(body)
        return wire.HeartbeatReply()


def fake_dn() -> Any:
    store = SimpleNamespace(
        node_id="dn-1",
        total=lambda: 100,
        used=0,
        free=lambda: 100,
        count=0,
        list=lambda: [],
    )
    config = SimpleNamespace(report_interval=3600.0)
    return SimpleNamespace(store=store, url="http://dn-1.test", config=config)


def replica(n: int) -> wire.Received:
    return wire.Received(f"b{n}", 1, 0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    now = SimpleNamespace(t=1000.0)
    monkeypatch.setattr(heartbeat.time, "monotonic", lambda: now.t)
    return now


@pytest.fixture
def pair() -> tuple[Heartbeats, FakeNameNode, FakeNameNode]:
    up, down = FakeNameNode("http://nn-1.test"), FakeNameNode("http://nn-2.test")
    return Heartbeats(fake_dn(), [up, down]), up, down  # type: ignore[list-item]


def test_every_link_of_a_process_has_its_one_incarnation() -> None:
    nns = [FakeNameNode("http://nn-1.test"), FakeNameNode("http://nn-2.test")]
    first = Heartbeats(fake_dn(), nns)  # type: ignore[arg-type]
    assert len({link.incarnation for link in first.links}) == 1
    again = Heartbeats(fake_dn(), nns)  # type: ignore[arg-type]
    assert again.links[0].incarnation != first.links[0].incarnation  # a restart is told


@pytest.mark.asyncio
async def test_news_waits_for_a_name_node_away_a_short_while(pair, clock) -> None:
    hbs, _, nn = pair
    link = hbs.links[1]
    await link.run_once()  # the first heartbeat brings the first report
    nn.down = True
    with pytest.raises(errors.Unavailable):
        await link.run_once()
    clock.t += heartbeat.NEWS_WINDOW - 1
    hbs.received(replica(1))
    hbs.corrupt("b2")
    nn.down = False
    await link.run_once()
    assert nn.heartbeats[-1].received == [replica(1)] and nn.heartbeats[-1].corrupt == ["b2"]
    assert nn.reports == 1 and link.received == link.corrupt == []


@pytest.mark.asyncio
async def test_news_for_a_name_node_away_too_long_is_dropped_for_a_report(pair, clock) -> None:
    hbs, up, down = pair
    for link in hbs.links:
        await link.run_once()
    down.down = True
    with pytest.raises(errors.Unavailable):
        await hbs.links[1].run_once()
    hbs.received(replica(1))
    clock.t += heartbeat.NEWS_WINDOW + 1
    for n in range(2, 100):
        hbs.received(replica(n))
        hbs.copy_failed(f"b{n}")
    assert hbs.links[1].received == [] and hbs.links[1].failed_copies == []
    assert len(hbs.links[0].received) == 99  # the name node that answers hears it all
    down.down = False
    await hbs.links[1].run_once()
    assert down.heartbeats[-1].received == [] and down.reports == 2  # a full report instead
    hbs.received(replica(100))  # and news is kept again
    assert hbs.links[1].received == [replica(100)]
    await hbs.links[0].run_once()
    assert up.reports == 1  # the other name node's link is left alone


@pytest.mark.asyncio
async def test_news_beyond_the_cap_is_dropped_for_a_report(pair, clock, monkeypatch) -> None:
    monkeypatch.setattr(heartbeat, "MAX_NEWS", 10)
    hbs, _, nn = pair
    link = hbs.links[1]
    await link.run_once()
    nn.down = True
    with pytest.raises(errors.Unavailable):
        await link.run_once()
    for n in range(25):
        hbs.received(replica(n))
    assert len(link.received) <= 10
    nn.down = False
    await link.run_once()
    assert nn.reports == 2


@pytest.mark.asyncio
async def test_a_disk_that_refused_a_block_is_told_to_every_name_node_for_a_while(
    pair: tuple[Heartbeats, FakeNameNode, FakeNameNode], clock: SimpleNamespace
) -> None:
    """So that they place no new block on this node; then its disk is tried again."""
    beats, up, _ = pair
    link = beats.links[0]
    await link.run_once()
    beats.refused("Input/output error")
    assert all(each._wake.is_set() for each in beats.links)  # told at once, not in 3 s
    await link.run_once()
    clock.t += heartbeat.REFUSED_FOR - 1
    await link.run_once()
    clock.t += 1
    await link.run_once()
    told = [beat.write_failure for beat in up.heartbeats]
    assert told == ["", "Input/output error", "Input/output error", ""]
