"""Small block writes sent to each data node together: group commit, on the data nodes.

A block of one chunk goes to each of its nodes in one body (``blocks._fan_out``). While one such
write of the client to a node is under way, the writes to that node that come meanwhile wait for
it and then go together in the next, up to ``wire.MAX_BLOCK_BATCH`` (``POST /blocks``): one
request, and one flush of the node's disk for the lot, where each alone would cost a request and
an fsync (``BlockStore.commit_many``). A lone write goes at once, by itself, so a writer of one
file at a time waits no longer than before; many writers at once (``write_many``, fsspec's
``pipe``, ``pydfs put -r``, threads sharing a client) share requests without asking for it.

Each block keeps its own outcome, with its own write token: one refused fails only its writer,
which sends it elsewhere as it would a lone write's. A batch that fails as a whole fails every
block in it, as each alone would have; when the node is unreachable or stalled, the writes
waiting for it fail with it at once rather than each wait as long again. A node without the
endpoint (an older version) gets each block alone.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from pydfs import wire
from pydfs.errors import NotFound, ProtocolError, PydfsError, Timeout, Unavailable, from_code
from pydfs.http1 import Answer

if TYPE_CHECKING:
    from pydfs.rpc import Links

_Waiting = tuple[str, str, bytes, "asyncio.Future[Answer]"]  # block id, token, frames, outcome


class Puts:
    """``rpc.Links`` for a client's block writes: a one-chunk block PUT to a node goes with the
    others waiting for that node (see the module); any other request goes as it is."""

    def __init__(self, links: Callable[[], Links]) -> None:
        self._links = links
        self._nodes: dict[str, _Node] = {}
        self.requests = 0  # block requests sent (lone or batched)

    async def request(
        self,
        url: str,
        method: str,
        route: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        token = (headers or {}).get(wire.H_BLOCK_TOKEN)
        small = body is not None and len(body) <= wire.WHOLE_BLOCK
        lone = token is None or len(token) > wire.BATCHED_HEAD // 2  # a batch cannot carry it
        if method != "PUT" or lone or not small or len(headers or {}) != 1:
            return await self._links().request(url, method, route, body, headers)
        assert body is not None and token is not None
        node = self._nodes.setdefault(url, _Node())
        if node.lone:  # it takes no batches: each goes as it comes, beside the others
            return await self._links().request(url, method, route, body, headers)
        if node.busy:
            done: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
            node.queue.append((route.rsplit("/", 1)[1], token, body, done))
            return await done
        node.busy = True
        try:
            self.requests += 1
            return await self._links().request(url, method, route, body, headers)
        except (Unavailable, Timeout) as exc:
            node.down = exc
            raise
        finally:
            self._next(url, node)

    def _next(self, url: str, node: _Node) -> None:
        """Send what waits, in a task of its own: its writers wait for it, not for this one."""
        if node.queue:
            node.sender = asyncio.get_running_loop().create_task(self._send(url, node))
        else:
            node.busy, node.down = False, None  # nobody waits to be told the node failed

    async def _send(self, url: str, node: _Node) -> None:
        try:
            while node.queue:
                if node.down is not None:  # those waiting would wait as long again, each
                    down, node.down = node.down, None
                    for *_, done in node.queue:
                        _settle(done, exc=copy.copy(down))
                    node.queue.clear()
                    break
                size = 1 if node.lone else _fitting(node.queue)
                batch, node.queue = node.queue[:size], node.queue[size:]
                batch = [w for w in batch if not w[3].done()]  # not cancelled
                if batch:
                    await self._request(url, node, batch)
        finally:
            node.busy, node.sender, node.down = False, None, None
            for *_, done in node.queue:  # only if this task was cancelled (the loop closing)
                done.cancel()
            node.queue.clear()

    async def _request(self, url: str, node: _Node, batch: list[_Waiting]) -> None:
        try:
            if len(batch) == 1:
                await self._alone(url, node, batch[0])
            else:
                await self._together(url, node, batch)
        except BaseException as exc:  # a bug, or this task cancelled: no writer waits forever
            for *_, done in batch:
                if done.done():
                    continue
                if isinstance(exc, Exception):
                    done.set_exception(copy.copy(exc))
                else:
                    done.cancel()
            if not isinstance(exc, Exception):
                raise

    async def _alone(self, url: str, node: _Node, waiting: _Waiting) -> None:
        block_id, token, body, done = waiting
        self.requests += 1
        headers = {wire.H_BLOCK_TOKEN: token}
        try:
            answer = await self._links().request(url, "PUT", f"/blocks/{block_id}", body, headers)
        except PydfsError as exc:
            if isinstance(exc, Unavailable | Timeout):
                node.down = exc
            _settle(done, exc=exc)
        else:
            _settle(done, answer)

    async def _together(self, url: str, node: _Node, batch: list[_Waiting]) -> None:
        self.requests += 1
        first, token, _, _ = batch[0]
        body = wire.pack_blocks([(block_id, token, frames) for block_id, token, frames, _ in batch])
        headers = {wire.H_BLOCK_TOKEN: token}
        try:
            answer = await self._links().request(
                url, "POST", f"/blocks?block={first}", body, headers
            )
            reply = wire.decode(answer.body, wire.BlockBatchReply)
        except NotFound:  # a node without batches (an older version): one by one, from now on
            node.lone = True
            await asyncio.gather(*(self._alone(url, node, waiting) for waiting in batch))
            return
        except PydfsError as exc:  # the node, not any one block: each fails as alone it would
            if isinstance(exc, Unavailable | Timeout):
                node.down = exc
            for *_, done in batch:
                _settle(done, exc=copy.copy(exc))
            return
        if len(reply.results) != len(batch):
            wrong = ProtocolError(f"{url} answered a batch of blocks with another count")
            for *_, done in batch:
                _settle(done, exc=copy.copy(wrong))
            return
        for (block_id, *_, done), result in zip(batch, reply.results, strict=True):
            if result.stored is not None and result.stored.block_id == block_id:
                _settle(done, Answer(200, wire.encode(result.stored), {}))
            elif result.stored is not None:
                _settle(done, exc=ProtocolError(f"{url} answered for another block"))
            else:
                error = result.error or wire.ErrorBody("protocol_error", "no block, no error")
                _settle(done, exc=from_code(error.code, error.message))


class _Node:
    """The block writes of one client to one data node."""

    def __init__(self) -> None:
        self.queue: list[_Waiting] = []
        self.busy = False  # a block request to the node is under way
        self.sender: asyncio.Task[None] | None = None  # sending what waited, if anything
        self.down: PydfsError | None = None  # why the last request failed, if the node did
        self.lone = False  # the node takes no batches: each block goes alone


def _fitting(queue: list[_Waiting]) -> int:
    """How many of the first writes waiting go in one request: at most
    ``wire.MAX_BLOCK_BATCH``, in a body the node takes (``wire.MAX_BATCH_BODY``)."""
    room = wire.MAX_BATCH_BODY - wire.BATCH_HEAD.size
    for n, (block_id, token, frames, _) in enumerate(queue[: wire.MAX_BLOCK_BATCH]):
        room -= len(frames) + len(block_id) + len(token) + 64
        if room < 0:
            return max(1, n)
    return min(len(queue), wire.MAX_BLOCK_BATCH)


def _settle(
    done: asyncio.Future[Answer], answer: Answer | None = None, *, exc: PydfsError | None = None
) -> None:
    """Tell a waiting writer its outcome, unless it gave up waiting (cancelled)."""
    if done.done():
        return
    if exc is not None:
        done.set_exception(exc)
    else:
        assert answer is not None
        done.set_result(answer)
