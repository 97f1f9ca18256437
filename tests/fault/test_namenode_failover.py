"""SIGKILL one of two name nodes (on one PostgreSQL) while several clients create, write,
rename and delete through both: the clients go on, every change they were told of is there,
and nothing they were not told of is half there (files read back byte-exact)."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable

import pytest

from pydfs import errors
from pydfs.cluster import LocalCluster
from pydfs.namenode import applied
from tests.conftest import BLOCK_SIZE

CLIENTS = 4
KILL_AFTER = 1.5  # seconds of work before the kill
# Seconds of work after it. A client whose request the killed name node applied without
# recording its answer waits for that answer (``applied.WAIT``) before it is told AnswerLost
# and goes on: each client must still have time to work after that.
WORK_AFTER = applied.WAIT + 2.5


class Model:
    """What one client was told: the files (and their bytes) and directories it made, and
    the paths of operations that failed (their outcome unknown), with every content ever
    written to each path."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = set()
        self.unsure: set[str] = set()
        self.written: dict[str, set[bytes]] = {}
        self.done = 0
        self.done_after_kill = 0
        self.failures: list[BaseException] = []


async def work(
    client_of: Callable[[], object],
    top: str,
    model: Model,
    killed: asyncio.Event,
    stop: asyncio.Event,
    seed: int,
) -> None:
    rnd = random.Random(seed)
    async with client_of() as fs:  # type: ignore[attr-defined]
        await fs.mkdir(top)
        k = 0
        while not stop.is_set():
            k += 1
            op = rnd.choice(["write", "write", "move", "delete", "mkdir"])
            paths: list[str] = []
            try:
                if op == "write" or not model.files:
                    path = f"{top}/f{k}"
                    paths = [path]
                    data = os.urandom(rnd.choice([10, 1000, BLOCK_SIZE + 7]))
                    model.written.setdefault(path, set()).add(data)
                    await fs.write_bytes(path, data, overwrite=False)
                    model.files[path] = data
                elif op == "move":
                    src = rnd.choice(sorted(model.files))
                    dst = f"{top}/m{k}"
                    paths = [src, dst]
                    model.written.setdefault(dst, set()).add(model.files[src])
                    await fs.move(src, dst)
                    model.files[dst] = model.files.pop(src)
                elif op == "delete":
                    path = rnd.choice(sorted(model.files))
                    paths = [path]
                    await fs.delete(path)
                    del model.files[path]
                else:
                    path = f"{top}/d{k}"
                    paths = [path]
                    await fs.mkdir(path)
                    model.dirs.add(path)
            except errors.PydfsError as exc:  # its outcome unknown: those paths are left out
                model.failures.append(exc)
                model.unsure.update(paths)
                for path in paths:
                    model.files.pop(path, None)
                    model.dirs.discard(path)
                continue
            model.done += 1
            if killed.is_set():
                model.done_after_kill += 1


@pytest.mark.asyncio
async def test_clients_go_on_when_a_name_node_is_killed_mid_workload(
    cluster_factory: Callable[..., LocalCluster], postgres_url: str
) -> None:
    cluster = cluster_factory(2, metadata=postgres_url, namenodes=2)
    one, two = cluster.urls
    models = [Model() for _ in range(CLIENTS)]
    killed, stop = asyncio.Event(), asyncio.Event()

    def client_of(i: int) -> Callable[[], object]:
        order = [one, two] if i % 2 == 0 else [two, one]  # half start on each name node
        return lambda: cluster.async_client(namenode=order)  # type: ignore[arg-type]

    tasks = [
        asyncio.ensure_future(work(client_of(i), f"/tmp/c{i}", models[i], killed, stop, i))
        for i in range(CLIENTS)
    ]
    await asyncio.sleep(KILL_AFTER)
    cluster.namenodes[0].kill()
    killed.set()
    await asyncio.sleep(WORK_AFTER)
    stop.set()
    await asyncio.gather(*tasks)

    for model in models:
        assert model.done_after_kill > 0, [(m.done, m.done_after_kill, m.failures) for m in models]
        assert len(model.failures) <= 1, model.failures  # only an answer lost in the kill

    async with cluster.async_client(namenode=two) as fs:
        for i, model in enumerate(models):
            top = f"/tmp/c{i}"
            listed = {e.path: e for e in await fs.ls(top)}
            sure = {p for p in listed if p not in model.unsure}
            assert sure == set(model.files) | model.dirs  # nothing acknowledged lost
            for path, data in model.files.items():
                assert await fs.read_bytes(path) == data
            for path in model.unsure & set(listed):  # there or not, but whole
                if listed[path].type == "file":
                    assert await fs.read_bytes(path) in model.written[path]
