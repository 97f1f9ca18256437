"""Commits of small files sent to the name node together: group commit, on the client's side.

A small file (an upload from a batch, ``Transfer.write``) ends with its commit. While one
commit request of the client is under way, the commits that come meanwhile wait for it and then
go together in the next, up to ``wire.MAX_COMMIT_BATCH`` (``POST /uploads/commit-many``): one
round trip, one transaction and one fsync on the name node for the lot, where each alone would
cost one of each. A lone commit goes at once, by itself, so a writer of one file at a time waits
no longer than before; many writers at once (``write_many``, fsspec's ``pipe`` and ``put``,
``pydfs put -r``) share requests without asking for it.

Each file keeps its own outcome: one refused (permission denied, exists, a lease gone) fails
only its writer. A batch refused as a whole (a name node without the endpoint, a race the
store lost) applied nothing, and its commits go again one by one; one whose fate is unknown
(``Unavailable`` after every retry, ``AnswerLost``) fails every writer in it, as a lone
commit's would.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydfs import wire
from pydfs.errors import AnswerLost, ProtocolError, PydfsError, Unavailable, from_code

if TYPE_CHECKING:
    from pydfs.rpc import Rpc

MAX_BLOCKS = 4096  # blocks one request commits, at most (about 0.5 MB of JSON)

_Waiting = tuple[wire.UploadCommit, "asyncio.Future[wire.FileStatus]"]


class Commits:
    """A client's commits of small files, grouped (see the module)."""

    def __init__(self, rpc: Callable[[], Rpc]) -> None:
        self._rpc = rpc
        self._queue: list[_Waiting] = []
        self._busy = False  # a commit request is under way
        self._sender: asyncio.Task[None] | None = None  # sending what waited, if anything
        self.requests = 0  # commit requests sent (lone or many)

    async def commit(self, upload_id: str, req: wire.CommitRequest) -> wire.FileStatus:
        """Commit the upload *upload_id*: at once if no other commit is under way (from this
        task, without a hand-off), else with whichever others wait when it is done."""
        commit = wire.UploadCommit(upload_id, req)
        if self._busy:
            done: asyncio.Future[wire.FileStatus] = asyncio.get_running_loop().create_future()
            self._queue.append((commit, done))
            return await done
        self._busy = True
        try:
            self.requests += 1
            route = f"/uploads/{upload_id}/commit"
            return await self._rpc().call("POST", route, req, reply=wire.FileStatus)
        finally:
            self._next()

    def _next(self) -> None:
        """Send what waits, in a task of its own: its writers wait for it, not for this one."""
        if self._queue:
            self._sender = asyncio.get_running_loop().create_task(self._send())
        else:
            self._busy = False

    async def _send(self) -> None:
        try:
            while self._queue:
                size = _fitting(self._queue)
                batch, self._queue = self._queue[:size], self._queue[size:]
                batch = [(c, done) for c, done in batch if not done.done()]  # not cancelled
                if batch:
                    await self._request(batch)
        finally:
            self._busy, self._sender = False, None
            for _, done in self._queue:  # only if this task was cancelled (the loop closing)
                done.cancel()
            self._queue.clear()

    async def _request(self, batch: list[_Waiting]) -> None:
        try:
            if len(batch) == 1:
                await self._alone(batch[0])
            else:
                await self._together(batch)
        except BaseException as exc:  # a bug, or this task cancelled: no writer waits forever
            for _, done in batch:
                if done.done():
                    continue
                if isinstance(exc, Exception):
                    done.set_exception(copy.copy(exc))
                else:
                    done.cancel()
            if not isinstance(exc, Exception):
                raise

    async def _alone(self, waiting: _Waiting) -> None:
        commit, done = waiting
        self.requests += 1
        try:
            route = f"/uploads/{commit.upload_id}/commit"
            status = await self._rpc().call("POST", route, commit.commit, reply=wire.FileStatus)
        except PydfsError as exc:
            _settle(done, exc=exc)
        else:
            _settle(done, status)

    async def _together(self, batch: list[_Waiting]) -> None:
        self.requests += 1
        req = wire.CommitManyRequest([c for c, _ in batch])
        try:
            reply = await self._rpc().call(
                "POST", "/uploads/commit-many", req, reply=wire.CommitManyReply
            )
        except (AnswerLost, Unavailable) as exc:  # applied or not: nobody can say
            for _, done in batch:
                _settle(done, exc=copy.copy(exc))
            return
        except PydfsError:  # refused as a whole, so nothing of it applied: one by one
            await asyncio.gather(*(self._alone(waiting) for waiting in batch))
            return
        if len(reply.results) != len(batch):
            for _, done in batch:
                _settle(done, exc=ProtocolError("a batch of commits answered with another count"))
            return
        for (_, done), result in zip(batch, reply.results, strict=True):
            if result.status is not None:
                _settle(done, result.status)
            else:
                error = result.error or wire.ErrorBody("protocol_error", "no status, no error")
                _settle(done, exc=from_code(error.code, error.message))


def _fitting(queue: list[_Waiting]) -> int:
    """How many of the first commits waiting go in one request: at most
    ``wire.MAX_COMMIT_BATCH``, naming at most ``MAX_BLOCKS`` blocks in all (a file of small
    blocks names many), so that the body stays well under the name node's limit."""
    blocks = 0
    for n, (commit, _) in enumerate(queue[: wire.MAX_COMMIT_BATCH]):
        blocks += len(commit.commit.blocks)
        if blocks > MAX_BLOCKS and n > 0:
            return n
    return min(len(queue), wire.MAX_COMMIT_BATCH)


def _settle(
    done: asyncio.Future[wire.FileStatus],
    status: wire.FileStatus | None = None,
    *,
    exc: PydfsError | None = None,
) -> None:
    """Tell a waiting writer its outcome, unless it gave up waiting (cancelled)."""
    if done.done():
        return
    if exc is not None:
        done.set_exception(exc)
    else:
        assert status is not None
        done.set_result(status)
