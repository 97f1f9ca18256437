"""The client's group commit of small files (``client.commits``) against a fake name node."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pydfs import errors, wire
from pydfs.client.commits import Commits


def status(path: str) -> wire.FileStatus:
    return wire.FileStatus(path, path.rsplit("/", 1)[1], "file", 1, 0.0, 0.0, "admin")


class FakeNameNode:
    """Answers commits after a turn of the loop; refuses the paths in *refuse*, or every
    batch with *batch_error*."""

    def __init__(self, batch_error: errors.PydfsError | None = None) -> None:
        self.calls: list[tuple[str, int]] = []  # (route, commits in it)
        self.refuse: set[str] = set()
        self.batch_error = batch_error

    async def call(self, method: str, route: str, body: Any, *, reply: Any = None) -> Any:
        await asyncio.sleep(0)
        if route == "/uploads/commit-many":
            self.calls.append((route, len(body.commits)))
            if self.batch_error is not None:
                raise self.batch_error
            return wire.CommitManyReply([self._one(c.commit) for c in body.commits])
        self.calls.append((route, 1))
        result = self._one(body)
        if result.error is not None:
            raise errors.from_code(result.error.code, result.error.message)
        return result.status

    def _one(self, commit: wire.CommitRequest) -> wire.CommitResult:
        assert commit.path is not None
        if commit.path in self.refuse:
            return wire.CommitResult(error=wire.ErrorBody("already_exists", f"{commit.path}"))
        return wire.CommitResult(status=status(commit.path))


def commit(path: str) -> wire.CommitRequest:
    return wire.CommitRequest([], path)


@pytest.mark.asyncio
async def test_a_lone_commit_goes_alone_and_those_meanwhile_go_together() -> None:
    nn = FakeNameNode()
    commits = Commits(lambda: nn)  # type: ignore[arg-type,return-value]
    assert (await commits.commit("u0", commit("/a"))).path == "/a"
    nn.refuse.add("/f3")
    results = await asyncio.gather(
        *(commits.commit(f"u{i}", commit(f"/f{i}")) for i in range(10)), return_exceptions=True
    )
    routes = ["/uploads/u0/commit", "/uploads/u0/commit", "/uploads/commit-many"]
    assert nn.calls == list(zip(routes, [1, 1, 9], strict=True))  # /a; /f0 alone; the 9 after
    assert isinstance(results[3], errors.AlreadyExists)
    assert [r.path for i, r in enumerate(results) if i != 3] == [  # type: ignore[union-attr]
        f"/f{i}" for i in range(10) if i != 3
    ]


@pytest.mark.asyncio
async def test_a_batch_refused_as_a_whole_is_sent_one_by_one() -> None:
    nn = FakeNameNode(batch_error=errors.NotFound("no such route"))
    commits = Commits(lambda: nn)  # type: ignore[arg-type,return-value]
    results = await asyncio.gather(*(commits.commit(f"u{i}", commit(f"/f{i}")) for i in range(5)))
    assert [r.path for r in results] == [f"/f{i}" for i in range(5)]
    assert [c for c in nn.calls if c[0] == "/uploads/commit-many"] == [("/uploads/commit-many", 4)]
    assert len(nn.calls) == 1 + 1 + 4


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "error", [errors.Unavailable("gone"), errors.AnswerLost("applied, answer lost")]
)
async def test_a_batch_of_unknown_fate_fails_every_writer_in_it(error: errors.PydfsError) -> None:
    nn = FakeNameNode(batch_error=error)
    commits = Commits(lambda: nn)  # type: ignore[arg-type,return-value]
    results = await asyncio.gather(
        *(commits.commit(f"u{i}", commit(f"/f{i}")) for i in range(5)), return_exceptions=True
    )
    assert results[0].path == "/f0"  # type: ignore[union-attr]  # alone, before the batch
    assert all(type(r) is type(error) for r in results[1:]), results
    assert len({id(r) for r in results[1:]}) == 4  # each writer its own exception
    assert len(nn.calls) == 2  # never sent again one by one


@pytest.mark.asyncio
async def test_a_writer_that_gave_up_is_left_out() -> None:
    nn = FakeNameNode()
    commits = Commits(lambda: nn)  # type: ignore[arg-type,return-value]
    first = asyncio.ensure_future(commits.commit("u0", commit("/f0")))
    await asyncio.sleep(0)
    waiting = [asyncio.ensure_future(commits.commit(f"u{i}", commit(f"/f{i}"))) for i in (1, 2)]
    await asyncio.sleep(0)
    waiting[0].cancel()
    await first
    assert (await waiting[1]).path == "/f2"
    assert [c[1] for c in nn.calls] == [1, 1]  # /f2 alone: /f1 was not sent


@pytest.mark.asyncio
async def test_a_request_names_a_bounded_number_of_blocks() -> None:
    nn = FakeNameNode()
    commits = Commits(lambda: nn)  # type: ignore[arg-type,return-value]
    block = wire.StoredBlock("b" * 32, 4096, 0, ["dn-1"])
    many = [wire.CommitRequest([block] * 2000, f"/f{i}") for i in range(5)]
    results = await asyncio.gather(*(commits.commit(f"u{i}", c) for i, c in enumerate(many)))
    assert [r.path for r in results] == [f"/f{i}" for i in range(5)]
    assert [c[1] for c in nn.calls] == [1, 2, 2]  # 4,000 blocks a request at most
