"""The client's grouping of small block writes per data node (``client.puts``), against fake
data nodes that answer as ``POST /blocks`` and ``PUT /blocks/{id}`` do."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pydfs import checksum, errors, http1, wire
from pydfs.client.puts import Puts


def framed(data: bytes) -> bytes:
    crc = checksum.crc(data)
    return wire.FRAME.pack(len(data), crc) + data + wire.FRAME.pack(0, crc)


class FakeNodes:
    """Answers after a turn of the loop; refuses the blocks in *refuse* (by id), every batch
    with *batch_error*, and knows no batches at all with *old*."""

    def __init__(self, batch_error: errors.PydfsError | None = None, old: bool = False) -> None:
        self.sent: list[tuple[str, str, int]] = []  # (url, method, blocks in it)
        self.refuse: set[str] = set()
        self.batch_error, self.old = batch_error, old

    async def request(self, url, method, route, body=None, headers=None) -> http1.Answer:  # type: ignore[no-untyped-def]
        await asyncio.sleep(0)
        if method == "POST" and route.startswith("/blocks?block="):
            blocks = wire.unpack_blocks(body)
            self.sent.append((url, method, len(blocks)))
            # admitted on its head by the first block's token, as a data node does
            first = blocks[0][0]
            assert route == f"/blocks?block={first.block_id}"
            assert headers == {wire.H_BLOCK_TOKEN: first.token}
            if self.old:
                raise errors.NotFound("no such route")
            if self.batch_error is not None:
                raise self.batch_error
            results = [self._one(url, item.block_id, item.token, data) for item, data in blocks]
            return http1.Answer(200, wire.encode(wire.BlockBatchReply(results)), {})
        assert method == "PUT"
        self.sent.append((url, method, 1))
        result = self._one(url, route.rsplit("/", 1)[1], headers[wire.H_BLOCK_TOKEN], body)
        if result.error is not None:
            raise errors.from_code(result.error.code, result.error.message)
        return http1.Answer(200, wire.encode(result.stored), {})

    def _one(self, url: str, block_id: str, token: str, body: bytes) -> wire.BatchedResult:
        if block_id in self.refuse or token != f"t-{block_id}":
            return wire.BatchedResult(error=wire.ErrorBody("unauthenticated", "bad token"))
        (_, crc) = wire.FRAME.unpack_from(body, len(body) - wire.FRAME.size)
        size = len(body) - 2 * wire.FRAME.size
        return wire.BatchedResult(stored=wire.StoredBlock(block_id, size, crc, [url]))


def put(puts: Puts, url: str, n: int) -> Any:
    block_id = f"{n:032x}"
    headers = {wire.H_BLOCK_TOKEN: f"t-{block_id}"}
    return puts.request(url, "PUT", f"/blocks/{block_id}", framed(bytes([n]) * n), headers)


async def stored(answer: Any) -> wire.StoredBlock:
    return wire.decode((await answer).body, wire.StoredBlock)


@pytest.mark.asyncio
async def test_a_lone_write_goes_alone_and_those_meanwhile_go_together_per_node() -> None:
    nodes = FakeNodes()
    puts = Puts(lambda: nodes)  # type: ignore[arg-type,return-value]
    assert (await stored(put(puts, "http://a", 1))).size == 1
    nodes.refuse.add(f"{5:032x}")
    answers = [put(puts, url, n) for n in range(2, 12) for url in ("http://a", "http://b")]
    results = await asyncio.gather(*answers, return_exceptions=True)
    # Per node: the first goes at once, the other nine wait for it and go in one batch.
    assert nodes.sent == [
        ("http://a", "PUT", 1),
        ("http://a", "PUT", 1),
        ("http://b", "PUT", 1),
        ("http://a", "POST", 9),
        ("http://b", "POST", 9),
    ]
    for (n, url), result in zip(
        [(n, url) for n in range(2, 12) for url in ("http://a", "http://b")], results, strict=True
    ):
        if n == 5:
            assert isinstance(result, errors.Unauthenticated)  # only its own writer fails
            continue
        assert isinstance(result, http1.Answer), result
        block = wire.decode(result.body, wire.StoredBlock)
        assert (block.block_id, block.size, block.nodes) == (f"{n:032x}", n, [url])
    assert puts.requests == 5


@pytest.mark.asyncio
async def test_a_batch_is_at_most_max_block_batch_blocks() -> None:
    nodes = FakeNodes()
    puts = Puts(lambda: nodes)  # type: ignore[arg-type,return-value]
    count = 2 * wire.MAX_BLOCK_BATCH + 3
    results = await asyncio.gather(*(stored(put(puts, "http://a", n % 200)) for n in range(count)))
    assert [size for *_, size in nodes.sent] == [1, wire.MAX_BLOCK_BATCH, wire.MAX_BLOCK_BATCH, 2]
    assert [r.size for r in results] == [n % 200 for n in range(count)]


@pytest.mark.asyncio
async def test_a_node_without_batches_gets_them_one_by_one() -> None:
    nodes = FakeNodes(old=True)
    puts = Puts(lambda: nodes)  # type: ignore[arg-type,return-value]
    results = await asyncio.gather(*(stored(put(puts, "http://a", n)) for n in range(1, 5)))
    assert [r.size for r in results] == [1, 2, 3, 4]
    assert (
        nodes.sent
        == [("http://a", "PUT", 1), ("http://a", "POST", 3)] + [("http://a", "PUT", 1)] * 3
    )


@pytest.mark.asyncio
async def test_a_batch_that_fails_whole_fails_each_of_its_blocks() -> None:
    nodes = FakeNodes(batch_error=errors.Unavailable("http://a: connection lost"))
    puts = Puts(lambda: nodes)  # type: ignore[arg-type,return-value]
    results = await asyncio.gather(
        *(put(puts, "http://a", n) for n in range(1, 5)), return_exceptions=True
    )
    assert isinstance(results[0], http1.Answer)  # the lone one went before
    assert all(isinstance(r, errors.Unavailable) for r in results[1:])
    assert len({id(r) for r in results[1:]}) == 3  # each writer its own exception
    # Nothing is left waiting: the next write goes alone at once.
    nodes.batch_error = None
    assert (await stored(put(puts, "http://a", 9))).size == 9


@pytest.mark.asyncio
async def test_other_requests_and_large_bodies_go_as_they_are() -> None:
    nodes = FakeNodes()
    puts = Puts(lambda: nodes)  # type: ignore[arg-type,return-value]
    block_id = f"{7:032x}"
    big = framed(b"x" * wire.CHUNK_SIZE) + b"!"  # larger than a one-chunk block's body
    headers = {wire.H_BLOCK_TOKEN: f"t-{block_id}"}
    first = asyncio.ensure_future(put(puts, "http://a", 1))
    await asyncio.sleep(0)
    with pytest.raises(AssertionError):  # straight to the (fake) node, not queued
        await puts.request("http://a", "GET", f"/blocks/{block_id}", None, headers)
    await puts.request("http://a", "PUT", f"/blocks/{block_id}", big, headers)
    await first
    assert nodes.sent == [("http://a", "PUT", 1), ("http://a", "PUT", 1)]


@pytest.mark.asyncio
async def test_a_cancelled_writer_leaves_the_others_their_answers() -> None:
    nodes = FakeNodes()
    puts = Puts(lambda: nodes)  # type: ignore[arg-type,return-value]
    tasks = [asyncio.ensure_future(stored(put(puts, "http://a", n))) for n in range(1, 6)]
    await asyncio.sleep(0)
    tasks[2].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[2], asyncio.CancelledError)
    assert [d.size for i, d in enumerate(done) if i != 2] == [1, 2, 4, 5]
    assert nodes.sent == [("http://a", "PUT", 1), ("http://a", "POST", 3)]


@pytest.mark.asyncio
async def test_a_node_that_knows_no_batches_is_sent_none_again() -> None:
    nodes = FakeNodes(old=True)
    puts = Puts(lambda: nodes)  # type: ignore[arg-type,return-value]
    await asyncio.gather(*(stored(put(puts, "http://a", n)) for n in range(1, 4)))
    nodes.sent.clear()
    results = await asyncio.gather(*(stored(put(puts, "http://a", n)) for n in range(4, 8)))
    assert [r.size for r in results] == [4, 5, 6, 7]
    assert nodes.sent == [("http://a", "PUT", 1)] * 4


class StalledNodes(FakeNodes):
    """The lone write to the node fails as a stalled node's does; nothing else is answered."""

    async def request(self, url, method, route, body=None, headers=None) -> http1.Answer:  # type: ignore[no-untyped-def]
        self.sent.append((url, method, 1))
        await asyncio.sleep(0.05)
        raise errors.Timeout(f"data node {url} took no data for 60s")


@pytest.mark.asyncio
async def test_the_writes_waiting_for_a_node_that_failed_fail_with_it_at_once() -> None:
    nodes = StalledNodes()
    puts = Puts(lambda: nodes)  # type: ignore[arg-type,return-value]
    results = await asyncio.gather(
        *(put(puts, "http://a", n) for n in range(1, 6)), return_exceptions=True
    )
    assert all(isinstance(r, errors.Timeout) for r in results), results
    assert len({id(r) for r in results}) == 5
    assert nodes.sent == [("http://a", "PUT", 1)]  # only the lone one waited for the node


class SwappingNodes(FakeNodes):
    """Answers a batch with its results swapped, as a broken or lying node might."""

    async def request(self, url, method, route, body=None, headers=None) -> http1.Answer:  # type: ignore[no-untyped-def]
        answer = await super().request(url, method, route, body, headers)
        if method == "POST":
            reply = wire.decode(answer.body, wire.BlockBatchReply)
            reply.results.reverse()
            return http1.Answer(200, wire.encode(reply), {})
        return answer


@pytest.mark.asyncio
async def test_a_result_for_another_block_is_not_taken_for_its_own() -> None:
    nodes = SwappingNodes()
    puts = Puts(lambda: nodes)  # type: ignore[arg-type,return-value]
    results = await asyncio.gather(
        *(put(puts, "http://a", n) for n in (1, 2, 2, 3)), return_exceptions=True
    )
    # the lone one, then 2, 2 and 3 together, answered 3, 2, 2: only the middle ones match
    assert isinstance(results[0], http1.Answer)
    assert isinstance(results[1], errors.ProtocolError)
    assert [wire.decode(r.body, wire.StoredBlock).size for r in results[2:3]] == [2]
    assert isinstance(results[3], errors.ProtocolError)


class FlakyNodes(FakeNodes):
    """Fails the first request as an unreachable node would, then answers."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def request(self, url, method, route, body=None, headers=None) -> http1.Answer:  # type: ignore[no-untyped-def]
        if not self.failed:
            self.failed = True
            self.sent.append((url, method, 1))
            raise errors.Unavailable(f"cannot reach {url}")
        return await super().request(url, method, route, body, headers)


@pytest.mark.asyncio
async def test_a_node_that_failed_once_and_came_back_is_written_to_again() -> None:
    nodes = FlakyNodes()
    puts = Puts(lambda: nodes)  # type: ignore[arg-type,return-value]
    with pytest.raises(errors.Unavailable):
        await put(puts, "http://a", 1)  # alone: nobody waited for it
    results = await asyncio.gather(*(stored(put(puts, "http://a", n)) for n in range(2, 8)))
    assert [r.size for r in results] == list(range(2, 8))
    assert nodes.sent[1:] == [("http://a", "PUT", 1), ("http://a", "POST", 5)]


@pytest.mark.asyncio
async def test_a_node_without_batches_gets_its_writes_side_by_side() -> None:
    nodes = FakeNodes(old=True)
    puts = Puts(lambda: nodes)  # type: ignore[arg-type,return-value]
    await asyncio.gather(*(stored(put(puts, "http://a", n)) for n in range(1, 4)))
    in_flight = peak = 0
    answer = nodes.request

    async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await answer(*args, **kwargs)
        finally:
            in_flight -= 1

    nodes.request = counting  # type: ignore[method-assign]
    await asyncio.gather(*(stored(put(puts, "http://a", n)) for n in range(4, 12)))
    assert peak == 8
