"""Random cross-directory moves, rmdirs and creates from several clients against two name
nodes on one PostgreSQL, then the tree, read from the database and by listing: one root, no
cycles, no orphans, every entry reachable."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import asyncpg
import pytest

from pydfs import errors
from pydfs.cluster import LocalCluster

CLIENTS = 6
SECONDS = 5.0
NAMES = "abcd"


def some_path(rnd: random.Random) -> str:
    """One of few paths below /race (so that clients collide): /race/a, /race/b/c, ..."""
    return "/race/" + "/".join(rnd.choice(NAMES) for _ in range(rnd.randint(1, 3)))


async def churn(fs: object, seed: int, deadline: float) -> int:
    """Random changes until *deadline*; the refusals races bring are expected, anything else
    (an internal error, an unavailable name node) is not. Returns how many were applied."""
    rnd = random.Random(seed)
    applied = 0
    while time.monotonic() < deadline:
        op = rnd.choice(["mkdir", "mkdir", "touch", "move", "move", "move", "rmdir", "rmtree"])
        try:
            if op == "mkdir":
                await fs.mkdir(some_path(rnd), parents=rnd.random() < 0.5)  # type: ignore[attr-defined]
            elif op == "touch":
                await fs.touch(some_path(rnd))  # type: ignore[attr-defined]
            elif op == "move":
                await fs.move(some_path(rnd), some_path(rnd))  # type: ignore[attr-defined]
            else:
                await fs.rmdir(some_path(rnd), recursive=op == "rmtree")  # type: ignore[attr-defined]
        except (
            errors.NotFound,
            errors.AlreadyExists,
            errors.NotADirectory,
            errors.IsADirectory,
            errors.DirectoryNotEmpty,
            errors.InvalidArgument,
        ):
            continue
        applied += 1
    return applied


@pytest.mark.asyncio
async def test_racing_moves_rmdirs_and_creates_leave_one_tree(
    cluster_factory: Callable[..., LocalCluster], postgres_url: str
) -> None:
    cluster = cluster_factory(1, metadata=postgres_url, namenodes=2)
    clients = [cluster.async_client(namenode=cluster.urls[i % 2]) for i in range(CLIENTS)]
    try:
        await clients[0].mkdir("/race")
        deadline = time.monotonic() + SECONDS
        applied = await asyncio.gather(*(churn(fs, i, deadline) for i, fs in enumerate(clients)))
    finally:
        for fs in clients:
            await fs.close()
    assert sum(applied) > 50  # the race was run, not refused throughout

    conn = await asyncpg.connect(postgres_url)
    try:
        rows = await conn.fetch("SELECT id, parent, name, type FROM inodes")
    finally:
        await conn.close()
    ids = {r["id"] for r in rows}
    roots = [r["id"] for r in rows if r["parent"] is None]
    assert len(roots) == 1  # one root
    assert all(r["parent"] in ids for r in rows if r["parent"] is not None)  # no orphans
    children: dict[int, list[int]] = {}
    for r in rows:
        if r["parent"] is not None:
            children.setdefault(r["parent"], []).append(r["id"])
    reached, todo = set(), [roots[0]]
    while todo:  # from the root: each once (a cycle is unreachable from it)
        node = todo.pop()
        assert node not in reached
        reached.add(node)
        todo.extend(children.get(node, []))
    assert reached == ids  # every entry reachable: no cycle cut off from /

    async with cluster.async_client(namenode=cluster.urls[1]) as fs:
        walked = 0
        async for _, dirs, files in fs.walk("/"):
            walked += len(dirs) + len(files)
    assert walked == len(ids) - 1  # every entry but the root, listed once
